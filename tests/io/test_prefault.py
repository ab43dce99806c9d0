"""Whole-file reads map their output's pages on a helper thread (evstream.io._blocks.Prefault)."""

from __future__ import annotations

import os
import resource
import sys

import numpy as np
import pytest

import evstream.io._blocks as blocks
from evstream.events import SensorSize
from evstream.io import open_reader
from evstream.io.aedat4 import write_aedat4
from tests.helpers import random_events
from tests.io.test_prophesee import ENCODERS, EVT_LINE, _dense_events, _padding_is_zero, encode_dat, header


def _kernel_populates() -> bool:
    if not sys.platform.startswith("linux") or blocks._madvise is None:
        return False
    major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    return (major, minor) >= (5, 14)  # MADV_POPULATE_WRITE


def _thread_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


@pytest.mark.skipif(not _kernel_populates(), reason="MADV_POPULATE_WRITE needs Linux >= 5.14")
def test_prefault_maps_the_pages_and_leaves_the_contents():
    cold = np.empty(32 << 20, np.uint8)
    before = _thread_faults()
    cold[:] = 7
    cold_faults = _thread_faults() - before

    warm = np.empty(32 << 20, np.uint8)
    warm[: 1 << 20] = 5  # written before and while the helper runs: must survive it
    fault = blocks.Prefault(warm)
    warm[1 << 20 : 2 << 20] = 6
    fault.join()
    before = _thread_faults()
    warm[2 << 20 :] = 7
    warm_faults = _thread_faults() - before
    assert cold_faults >= 8 and warm_faults <= cold_faults // 4, (cold_faults, warm_faults)
    assert (warm[: 1 << 20] == 5).all() and (warm[1 << 20 : 2 << 20] == 6).all() and (warm[2 << 20 :] == 7).all()


def test_small_or_strided_arrays_start_no_thread():
    assert blocks.Prefault(np.empty(1024, np.uint8))._thread is None
    assert blocks.Prefault(np.empty((64 << 20) // 2, np.uint16)[::2])._thread is None
    blocks.Prefault(np.empty(16, np.uint8)).join()  # a no-op join


@pytest.mark.parametrize("fmt", ["dat", "evt2", "evt21", "evt3", "aedat4"])
def test_reads_with_prefault_equal_the_stream(tmp_path, monkeypatch, fmt):
    """Every whole-file read that prefaults gives the events of its own packet stream (the RAW and
    DAT readers' zero padding included), with the helper thread running for every array, however small."""
    monkeypatch.setattr(blocks, "_PREFAULT_MIN_BYTES", 0)
    started = []
    real_init = blocks.Prefault.__init__

    def counting_init(self, array):
        real_init(self, array)
        started.append(self._thread is not None or blocks._madvise is None)

    monkeypatch.setattr(blocks.Prefault, "__init__", counting_init)
    sensor = SensorSize(320, 320)
    if fmt == "aedat4":
        events = random_events(30_000, sensor, seed=4)
        path = tmp_path / "r.aedat4"
        write_aedat4(path, events, sensor, "lz4", packet_events=7_000)
    elif fmt == "dat":
        events = random_events(30_000, SensorSize(1280, 720), t0=(1 << 32) - 100_000, seed=5)
        path = tmp_path / "r.dat"
        path.write_bytes(encode_dat(events, 2, geometry=(1280, 720)))
    else:
        events = _dense_events(sensor, t0=(1 << 24) - 100_000 if fmt == "evt3" else (1 << 34) - 100_000, n=30_000, seed=6)
        path = tmp_path / "r.raw"
        path.write_bytes(header(EVT_LINE[fmt], "geometry 320x320") + ENCODERS[fmt](events))
    with open_reader(path) as reader:
        whole = reader.read()
        streamed = np.concatenate(list(reader.iter_packets()))
    assert started and all(started)
    assert np.array_equal(whole, events) and np.array_equal(streamed, events)
    assert fmt == "aedat4" or _padding_is_zero(whole)  # the RAW and DAT readers zero the padding
