"""Control side of the dashboard: commands to the pipeline over REQ/REP, off the GUI thread.

A button press queues a command; a worker thread sends it on a REQ socket with send and receive
timeouts and queues the reply for the GUI timer to show. A command that times out closes the
socket and opens a fresh one (zguide ch. 4, "Lazy Pirate": a REQ socket that lost its reply is
stuck in the wrong state). The GUI thread never waits on the network.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgpack
import zmq

from evstream.protocol import CONTROL_COMMANDS, encode_control

__all__ = ["ControlWorker", "ControlReply", "default_control_address"]


def default_control_address(publish_address: str) -> str | None:
    """The control address by convention: same host, publish port + 1 (``tcp://`` only, else None)."""
    if not publish_address.startswith("tcp://"):
        return None
    parts = urlsplit(publish_address)
    if parts.port is None:
        return None
    host = parts.hostname or "127.0.0.1"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"tcp://{host}:{parts.port + 1}"


@dataclass
class ControlReply:
    """Outcome of one command: ``ok`` and the reply map, or an error line."""

    cmd: str
    ok: bool
    reply: dict
    error: str | None = None


class ControlWorker:
    """Sends control commands from a worker thread.

    Args:
        address: the control socket's address, or None until known (commands then fail with a message).
        context: ZeroMQ context (default: the global one).
        timeout_ms: send and receive timeout per command.
    """

    def __init__(self, address: str | None = None, context: zmq.Context | None = None, timeout_ms: int = 1500) -> None:
        self._context = context or zmq.Context.instance()
        self._address = address
        self._timeout_ms = int(timeout_ms)
        self._requests: queue.Queue = queue.Queue(maxsize=64)
        self._replies: queue.Queue[ControlReply] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="evstream-dashboard-control", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str | None:
        return self._address

    def set_address(self, address: str | None) -> None:
        """Use ``address`` for the next command (the socket is reopened)."""
        if address != self._address:
            self._requests.put(("__address__", {"address": address}))
            self._address = address

    def send(self, cmd: str, **args) -> None:
        """Queue ``cmd`` with its arguments (see :data:`evstream.protocol.CONTROL_COMMANDS`); never blocks."""
        if cmd not in CONTROL_COMMANDS:
            raise ValueError(f"unknown control command {cmd!r}")
        try:
            self._requests.put_nowait((cmd, args))
        except queue.Full:
            self._replies.put(ControlReply(cmd, False, {}, "too many commands waiting"))

    def replies(self) -> list[ControlReply]:
        """Replies that arrived since the last call, oldest first."""
        out = []
        while True:
            try:
                out.append(self._replies.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        """Stop the worker (a command in flight finishes or times out first)."""
        self._requests.put(None)
        self._thread.join(self._timeout_ms / 1000 * 2 + 1)

    def _open(self, address: str) -> zmq.Socket:
        socket = self._context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDTIMEO, self._timeout_ms)
        socket.setsockopt(zmq.RCVTIMEO, self._timeout_ms)
        socket.connect(address)
        return socket

    def _run(self) -> None:
        address = self._address
        socket: zmq.Socket | None = None
        try:
            while True:
                item = self._requests.get()
                if item is None:
                    return
                cmd, args = item
                if cmd == "__address__":
                    if socket is not None:
                        socket.close(0)
                        socket = None
                    address = args["address"]
                    continue
                if address is None:
                    self._replies.put(ControlReply(cmd, False, {}, "no control address known yet"))
                    continue
                try:
                    if socket is None:
                        socket = self._open(address)
                    socket.send(encode_control(cmd, **args))
                    reply = msgpack.unpackb(socket.recv(), raw=False, strict_map_key=False)
                except zmq.Again:
                    socket.close(0)
                    socket = None
                    self._replies.put(ControlReply(cmd, False, {}, f"{address}: no reply within {self._timeout_ms} ms"))
                    continue
                except zmq.ZMQError as err:
                    if socket is not None:
                        socket.close(0)
                    socket = None
                    self._replies.put(ControlReply(cmd, False, {}, f"{address}: {err}"))
                    continue
                except (ValueError, msgpack.UnpackException) as err:
                    self._replies.put(ControlReply(cmd, False, {}, f"{address}: reply is not msgpack ({err})"))
                    continue
                if not isinstance(reply, dict):
                    self._replies.put(ControlReply(cmd, False, {}, f"{address}: reply is not a map"))
                    continue
                ok = bool(reply.get("ok", False))
                self._replies.put(ControlReply(cmd, ok, reply, None if ok else str(reply.get("error", "refused"))))
        finally:
            if socket is not None:
                socket.close(0)
