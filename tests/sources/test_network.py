"""NetworkSource against a real dv-processing NetworkWriter on 127.0.0.1."""

from __future__ import annotations

import datetime
import time

import numpy as np
import pytest

from evstream.errors import SourceError
from evstream.events import as_events, concatenate
from evstream.sources import open_source
from evstream.sources.network import NetworkSource, parse_address
from tests.helpers import free_port

dv = pytest.importorskip("dv_processing")


def test_events_from_a_dv_network_writer_arrive_identical():
    port = free_port()
    stream = dv.io.Stream.EventStream(0, "events", "DVXplorer_DXA00093", (640, 480))
    writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
    stores = [
        dv.data.generate.uniformEventsWithinTimeRange(
            1_700_000_000_000_000 + 10_000 * k, datetime.timedelta(microseconds=10_000), (640, 480), 500 + 37 * k, k
        )
        for k in range(8)
    ]
    expected = concatenate(as_events(np.asarray(s.numpy())) for s in stores)
    source = open_source(f"tcp://127.0.0.1:{port}", timeout=5.0)
    try:
        assert isinstance(source, NetworkSource) and source.live
        assert (source.sensor_size.width, source.sensor_size.height) == (640, 480)
        assert "DVXplorer_DXA00093" in source.name
        for store in stores:
            writer.writeEvents(store)
        chunks = []
        received = 0
        for chunk in source:
            chunks.append(chunk)
            received += len(chunk)
            if received >= len(expected):
                break
    finally:
        source.close()
        # dv-processing 2.0.4 deadlocks when a NetworkWriter is destroyed while a client's
        # disconnect is still being processed: wait until it has seen the client go.
        while writer.getClientCount():
            time.sleep(0.001)
        del writer
    got = concatenate(chunks)
    np.testing.assert_array_equal(got, expected)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.t_end == after.t_start
    for chunk in chunks:
        assert chunk.t_start <= chunk.events["t"][0] and chunk.events["t"][-1] < chunk.t_end


def test_refused_connection_names_the_address():
    port = free_port()
    with pytest.raises(SourceError) as info:
        open_source(f"tcp://127.0.0.1:{port}", timeout=2.0)
    assert f"tcp://127.0.0.1:{port}" in str(info.value) and "refused" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("spec", ["tcp://127.0.0.1", "tcp://:7777", "tcp://host:port", "tcp://127.0.0.1:7777/x"])
def test_malformed_address_is_named(spec):
    with pytest.raises(SourceError, match="tcp://host:port"):
        parse_address(spec)
    with pytest.raises(SourceError, match=spec.replace(".", r"\.")):
        open_source(spec)


def test_parse_address():
    assert parse_address("tcp://127.0.0.1:7777") == ("127.0.0.1", 7777)
    assert parse_address("tcp://[::1]:7777") == ("::1", 7777)
