"""Qt dashboard (PyQt6 + pyqtgraph) attached to a published evstream stream.

It consumes only protocol messages (:mod:`evstream.protocol`), never the models or the pipeline,
so it attaches to a pipeline in its own process (``inproc://``) exactly as to one on another
machine (``tcp://host:5556``). Entry point: :func:`run_dashboard`.
"""

from __future__ import annotations

from evstream.dashboard.app import run_dashboard

__all__ = ["run_dashboard"]
