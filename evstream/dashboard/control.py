"""Control side of the dashboard: commands to the pipeline over REQ/REP, off the GUI thread.

A button press queues a command; a worker thread sends it with
:class:`evstream.publish.ControlClient` (REQ with a reply timeout; after a timeout it opens a fresh
socket, zguide ch. 4 "Lazy Pirate") and queues the reply for the GUI timer to show. The GUI
thread never waits on the network.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgpack
import zmq

from evstream.errors import EvstreamError
from evstream.protocol import CONTROL_COMMANDS
from evstream.publish import ControlClient

__all__ = ["ControlWorker", "ControlReply", "default_control_address", "reachable_control_address"]

_SET_ADDRESS = object()  # queue marker: switch to another control address


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


_ANY_HOST = ("*", "0.0.0.0", "::", "")
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def reachable_control_address(announced: str, publish_address: str) -> str:
    """The control address announced by ``status``, as seen from this subscriber.

    A pipeline announces what it bound: a wildcard host (``tcp://*:5557``) or its own loopback
    (``tcp://127.0.0.1:5557``) means "on my machine", which from here is the publisher's host.
    """
    if not (announced.startswith("tcp://") and publish_address.startswith("tcp://")):
        return announced
    host, _, port = announced[len("tcp://"):].rpartition(":")
    host = host.strip("[]")
    pub_host = urlsplit(publish_address).hostname or "127.0.0.1"
    if host in _ANY_HOST or (host in _LOOPBACK and pub_host not in _LOOPBACK):
        pub_host = f"[{pub_host}]" if ":" in pub_host else pub_host
        return f"tcp://{pub_host}:{port}"
    return announced


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
        timeout_ms: how long one command waits for its reply.
    """

    def __init__(self, address: str | None = None, context: zmq.Context | None = None, timeout_ms: int = 1500,
                 curve: dict | None = None) -> None:
        self._context = context or zmq.Context.instance()
        # CURVE client options of ControlClient (a CURVE pipeline's control socket needs the keys)
        self._curve = {k: v for k, v in (curve or {}).items() if v is not None}
        self._address = address
        self._timeout_ms = int(timeout_ms)
        self._requests: queue.Queue = queue.Queue(maxsize=64)
        self._replies: queue.Queue[ControlReply] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="evstream-dashboard-control", daemon=True)
        self._thread.start()
        if address is not None:
            self._requests.put((_SET_ADDRESS, address))

    @property
    def address(self) -> str | None:
        return self._address

    def set_address(self, address: str | None) -> None:
        """Use ``address`` for the next command (the socket is reopened)."""
        if address != self._address:
            self._requests.put((_SET_ADDRESS, address))
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
        try:
            self._requests.put(None, timeout=1.0)
        except queue.Full:  # the daemon thread ends with the process
            return
        self._thread.join(self._timeout_ms / 1000 * 2 + 1)

    def _run(self) -> None:
        client: ControlClient | None = None
        try:
            while True:
                item = self._requests.get()
                if item is None:
                    return
                cmd, args = item
                if cmd == _SET_ADDRESS:
                    if client is not None:
                        client.close()
                    client = None if args is None else ControlClient(args, timeout_ms=self._timeout_ms, context=self._context,
                                                                        **self._curve)
                    continue
                if client is None:
                    self._replies.put(ControlReply(cmd, False, {}, "no control address known yet"))
                    continue
                try:
                    reply = client.send(cmd, **args)
                except EvstreamError as err:  # no reply in time (the client rebuilt its socket), bad address
                    self._replies.put(ControlReply(cmd, False, {}, str(err)))
                    continue
                except (ValueError, msgpack.UnpackException) as err:
                    self._replies.put(ControlReply(cmd, False, {}, f"control {client.address}: reply is not msgpack ({err})"))
                    continue
                ok = bool(reply.get("ok", False))
                self._replies.put(ControlReply(cmd, ok, reply, None if ok else str(reply.get("error", "refused"))))
        finally:
            if client is not None:
                client.close()
