"""Fixtures of the dashboard tests: the feeder and control sockets of :mod:`tests.dashboard.streams`
and the dashboard window attached to them."""

from __future__ import annotations

import pytest
import zmq

from tests.dashboard.streams import ControlRecorder, StreamFeeder


@pytest.fixture
def zmq_context():
    context = zmq.Context()
    yield context
    context.term()


@pytest.fixture
def feeder(zmq_context):
    feeder = StreamFeeder(zmq_context)
    yield feeder
    feeder.close()


@pytest.fixture
def control_recorder(zmq_context):
    recorder = ControlRecorder(zmq_context)
    yield recorder
    recorder.close()


@pytest.fixture
def window_factory(qtbot):
    """Builds a DashboardWindow, shows it, and shuts it down after the test."""
    from evstream.dashboard.window import DashboardWindow

    windows = []

    def make(address: str, control: str | None = None, **options) -> DashboardWindow:
        window = DashboardWindow(address, control=control, **options)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
