import numpy as np
import pytest

from evstream import EVENT_DTYPE, EventFormatError, SensorSize
from evstream.events import EventChunk, as_events, concatenate, make_events, slice_time
from tests.helpers import random_events


def test_event_dtype_is_the_aedat4_layout():
    assert EVENT_DTYPE.itemsize == 16
    assert [EVENT_DTYPE.fields[n][1] for n in ("t", "x", "y", "p")] == [0, 8, 10, 12]
    # First DAVIS346 event of formats.md §1.5, decoded from its raw bytes.
    raw = bytes.fromhex("ce7e547d12ce0500da000f0001000000")
    ev = np.frombuffer(raw, EVENT_DTYPE)[0]
    assert (ev["t"], ev["x"], ev["y"], ev["p"]) == (1633953690975950, 218, 15, 1)


def test_as_events_accepts_dv_processing_and_aedat_field_names():
    dv = np.zeros(3, dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
    dv["timestamp"] = [1, 2, 3]
    dv["polarity"] = [1, 0, 1]
    out = as_events(dv)
    assert out.dtype == EVENT_DTYPE and out["t"].tolist() == [1, 2, 3] and out["p"].tolist() == [1, 0, 1]
    packed = np.zeros(2, dtype=[("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "?")])
    assert as_events(packed).dtype == EVENT_DTYPE


@pytest.mark.parametrize("missing", ["t", "x", "y", "p"])
def test_as_events_names_every_missing_field(missing):
    fields = [(n, "<i8") for n in ("t", "x", "y", "p") if n != missing]
    with pytest.raises(EventFormatError, match=repr(missing)):
        as_events(np.zeros(1, dtype=fields))


def test_as_events_rejects_float_fields_and_plain_arrays():
    with pytest.raises(EventFormatError, match="'x'"):
        as_events(np.zeros(1, dtype=[("t", "<i8"), ("x", "<f4"), ("y", "<i2"), ("p", "u1")]))
    with pytest.raises(EventFormatError):
        as_events(np.zeros((3, 4)))


def test_slice_time_is_half_open_and_a_view():
    ev = make_events([0, 10, 10, 20, 30], [0] * 5, [0] * 5, [1] * 5)
    part = slice_time(ev, 10, 30)
    assert part["t"].tolist() == [10, 10, 20]
    assert np.shares_memory(part, ev)
    assert len(slice_time(ev, 31, 40)) == 0 and len(slice_time(ev, 20, 10)) == 0


def test_concatenate_chunks_and_arrays():
    a, b = random_events(5, seed=1), random_events(7, seed=2, t0=2_000_000)
    out = concatenate([EventChunk.from_events(a), b])
    assert len(out) == 12 and out.dtype == EVENT_DTYPE
    assert len(concatenate([])) == 0


def test_sensor_size_validates():
    assert SensorSize(640, 480).tonic == (640, 480, 2)
    with pytest.raises(EventFormatError):
        SensorSize(0, 10)
