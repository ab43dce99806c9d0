"""ZeroMQ side of evstream: the publisher of the stream, its subscriber client, the control socket.

The published stream follows the zguide (ch. 2 and 5): one XPUB socket sends multipart
``[topic, header, *buffers]`` messages (schema in :mod:`evstream.protocol`), with a per-topic
sequence number so every subscriber sees its own losses, a ``status`` message every second for
late joiners, and a send high-water mark instead of an unbounded queue. XPUB (rather than PUB)
hands the publisher the subscriptions, so heavy topics (``frame``, ``spikes``, ``attn``) are
computed only while somebody wants them.

Commands to the pipeline travel on a separate REQ/REP socket (:class:`ControlServer`,
:class:`ControlClient`), never on the pub/sub path.

Security: sockets bind loopback unless another address is given. With a CURVE secret key file
the publisher is a CURVE server (libzmq's CurveZMQ); a folder of allowed client public keys
restricts who may connect (``zmq.auth.ThreadAuthenticator``). The control socket of a CURVE
publisher takes the same server key and the same allow-list (``ControlServer(publisher=...)``:
one authenticator for both), so nobody reaches it unauthenticated. ``python main.py keys``
makes the key pairs (``zmq.auth.create_certificates``).

Hostile peers: the publisher applies only subscriptions to the known topics (``XPUB_MANUAL``),
so unknown or oversized prefixes cost nothing but a counter (``ignored_subscriptions``);
inbound frames are capped at :data:`MAX_INBOUND_BYTES` (a peer sending more is disconnected by
libzmq; libzmq itself keeps each distinct prefix a peer sent until it leaves, so the cap bounds
what one costs), and subscriptions are drained in short batches so publishing never waits long for
them. A subscriber skips and counts messages that do not decode; nothing is ever unpickled.

Example (a program of your own)::

    from evstream.publish import Subscriber

    with Subscriber("tcp://127.0.0.1:5556", topics=("pred", "status")) as sub:
        for msg in sub:
            if msg.topic == "status":
                classes = msg.data["classes"]
            elif msg.data["changed"]:
                print(msg.t_end, msg.data["name"], msg.data["confidence"], msg.arrays["probs"])
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgpack
import numpy as np
import zmq

from evstream import protocol
from evstream.errors import ConfigError, EvstreamError, ProtocolError

__all__ = [
    "DEFAULT_PUBLISH",
    "DEFAULT_CONTROL",
    "Publisher",
    "Subscriber",
    "TopicStats",
    "ControlServer",
    "ControlClient",
    "control_address_for",
    "MAX_INBOUND_BYTES",
    "MAX_INBOUND_BYTES_CURVE",
]

DEFAULT_PUBLISH = "tcp://127.0.0.1:5556"
DEFAULT_CONTROL = "tcp://127.0.0.1:5557"

_SUBSCRIBE, _UNSUBSCRIBE = 1, 0
# Largest frame a subscriber may send, bytes; one sending more is disconnected by libzmq before
# anything is stored. libzmq keeps every distinct prefix a peer sends (even those we never apply)
# in a byte-per-node trie until the peer leaves, so this caps what each bogus subscription costs
# (about 0.5 KiB for a 31-byte prefix; measured by bench/sub_flood.py). 32 is the smallest cap
# that leaves room for the NULL handshake's READY command (26-27 bytes for SUB / XSUB; 24 fails)
# and a subscription to the longest topic; CURVE's INITIATE command needs ~300.
MAX_INBOUND_BYTES = 32
MAX_INBOUND_BYTES_CURVE = 512
# Control requests are small msgpack maps (a path is the longest argument).
MAX_CONTROL_REQUEST_BYTES = 8192
# (Un)subscriptions read per lock hold: a flood delays a publish by at most this many reads.
_DRAIN_BATCH = 64
# After this many ignored (un)subscriptions, an emptied queue hands freed heap back to the OS:
# glibc keeps the small blocks of a departed flooder's trie otherwise (+5 MiB per 10,000).
_TRIM_AFTER_IGNORED = 1000


def _trim_heap() -> None:
    """Return free heap memory to the OS (glibc ``malloc_trim``; a no-op elsewhere)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None
# Subscriptions applied: each topic, and the empty prefix (everything, as zmq tools send it).
_KNOWN_PREFIXES = frozenset([b"", *(t.encode("ascii") for t in protocol.TOPICS)])


def control_address_for(publish_address: str, host: str | None = None) -> str | None:
    """The default control address for a publish address: port + 1 (tcp only).

    Args:
        publish_address: e.g. ``tcp://0.0.0.0:5556``.
        host: the control socket's host; ``None`` keeps the publish address's host (a client
            guessing a remote pipeline's control socket), the pipeline passes ``127.0.0.1``
            so the control socket stays on loopback however widely the stream is published.
    """
    if not publish_address.startswith("tcp://"):
        return None
    pub_host, sep, port = publish_address[len("tcp://"):].rpartition(":")
    if not sep or not port.isdigit():
        return None
    return f"tcp://{pub_host if host is None else host}:{int(port) + 1}"


def _load_keypair(path: str | os.PathLike, what: str) -> tuple[bytes, bytes | None]:
    """Public and (when the file holds one) secret key of a zmq.auth certificate file."""
    import zmq.auth

    try:
        return zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{what} {os.fspath(path)}: not a readable CURVE certificate ({err})") from None


def _bind(socket: zmq.Socket, address: str, what: str, retry_s: float = 1.0) -> None:
    # A socket closed a moment ago in this process releases its port from libzmq's I/O thread,
    # shortly after close() returns; a restart on the same address waits that moment out.
    deadline = time.monotonic() + retry_s
    while True:
        try:
            socket.bind(address)
            return
        except zmq.ZMQError as err:
            if err.errno != zmq.EADDRINUSE or time.monotonic() >= deadline:
                raise ConfigError(f"{what} {address}: cannot bind ({err.strerror})") from None
            time.sleep(0.02)


def _connect(socket: zmq.Socket, address: str, what: str) -> None:
    try:
        socket.connect(address)
    except zmq.ZMQError as err:
        raise ConfigError(f"{what} {address}: cannot connect ({err.strerror})") from None


class Publisher:
    """XPUB publisher of the evstream protocol; thread-safe (one lock around the socket).

    Args:
        address: where to bind, or several addresses (e.g. tcp plus ``inproc://`` for an
            in-process dashboard). Loopback by default.
        context: ZeroMQ context (share it with in-process ``inproc://`` subscribers).
        publisher_id: identifies this publisher in every header; a fresh random id by default,
            so subscribers notice a restarted publisher and reset their gap tracking.
        hwm: send high-water mark in messages per subscriber. Past it libzmq drops messages for
            that subscriber alone (it sees the gap in ``seq``); the publisher's memory stays
            bounded by ``hwm`` × message size per stalled subscriber.
        curve_secret_key_file: zmq.auth certificate holding this server's secret key; makes the
            socket a CURVE server (encrypted; clients need the matching public key).
        curve_clients_dir: folder of allowed clients' public certificates (``*.key``); without
            it any client that knows the server key may connect.
        linger_ms: how long ``close()`` waits to deliver messages still queued.
    """

    def __init__(
        self,
        address: str | list[str] | tuple[str, ...] = DEFAULT_PUBLISH,
        *,
        context: zmq.Context | None = None,
        publisher_id: str | None = None,
        hwm: int = 256,
        curve_secret_key_file: str | os.PathLike | None = None,
        curve_clients_dir: str | os.PathLike | None = None,
        linger_ms: int = 1000,
    ) -> None:
        addresses = [address] if isinstance(address, str) else list(address)
        if hwm < 1:
            raise ConfigError(f"hwm must be >= 1, got {hwm}")
        self.addresses = addresses
        self.address = addresses[0]
        self.publisher_id = publisher_id or uuid.uuid4().hex[:12]
        self.context = context or zmq.Context.instance()
        self._lock = threading.RLock()
        # Next sequence number per topic and stream: stream 0 under the topic alone (as before
        # streams existed), stream n > 0 under (topic, n).
        self._seq: dict[str | tuple[str, int], int] = dict.fromkeys(protocol.TOPICS, 0)
        self._subscriptions: dict[bytes, int] = {}
        self.ignored_subscriptions = 0  # (un)subscriptions to unknown prefixes, not applied
        self._ignored_at_trim = 0
        self.sent = dict.fromkeys(protocol.TOPICS, 0)
        self.send_failures = dict.fromkeys(protocol.TOPICS, 0)
        self._status_provider: Callable[[], dict] | None = None
        self._status_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._auth = None
        self._status_joined = False
        self._closed = False
        self._linger_ms = linger_ms

        socket = self.context.socket(zmq.XPUB)
        socket.setsockopt(zmq.SNDHWM, hwm)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_BYTES if curve_secret_key_file is None else MAX_INBOUND_BYTES_CURVE)
        # Every (un)subscription reaches us, duplicates and disconnects included, so the counts
        # per topic stay exact (XPUB_VERBOSER, libzmq >= 4.3); none takes effect until we apply
        # it (XPUB_MANUAL), so libzmq's routing trie only ever holds the known topics.
        socket.setsockopt(zmq.XPUB_VERBOSER, 1)
        socket.setsockopt(zmq.XPUB_MANUAL, 1)
        self.curve_keypair: tuple[bytes, bytes] | None = None
        if curve_secret_key_file is not None:
            public, secret = _load_keypair(curve_secret_key_file, "CURVE secret key file")
            if secret is None:
                socket.close(0)
                raise ConfigError(f"CURVE secret key file {os.fspath(curve_secret_key_file)}: holds no secret key")
            if curve_clients_dir is not None:
                try:
                    self._auth = _start_authenticator(self.context, curve_clients_dir)
                except ConfigError:
                    socket.close(0)
                    raise
            self.curve_keypair = (public, secret)
            make_curve_server(socket, self.curve_keypair)
        elif curve_clients_dir is not None:
            socket.close(0)
            raise ConfigError("CURVE clients folder given without a CURVE secret key file")
        self._socket = socket
        try:
            for addr in addresses:
                _bind(socket, addr, "publish address")
        except ConfigError:
            self.close()
            raise
        self.curve = curve_secret_key_file is not None

    # -- subscriptions -------------------------------------------------------------------------

    def poll_subscriptions(self, limit: int | None = _DRAIN_BATCH) -> list[tuple[bool, str]]:
        """Read pending (un)subscriptions, at most ``limit`` (None: all, in short lock holds).

        Only subscriptions to a known topic (or to everything, the empty prefix) are applied and
        counted; any other prefix is ignored and counted in ``ignored_subscriptions``.

        Returns:
            the applied changes as ``(subscribed, topic)``, oldest first.
        """
        changes: list[tuple[bool, str]] = []
        while limit is None or len(changes) < limit:
            batch = _DRAIN_BATCH if limit is None else min(_DRAIN_BATCH, limit - len(changes))
            read = self._drain(batch, changes)
            if read < batch:
                break
        return changes

    def _drain(self, batch: int, changes: list[tuple[bool, str]]) -> int:
        """Read up to ``batch`` frames under the lock; return how many were read."""
        with self._lock:
            if self._closed:
                return 0
            for read in range(batch):
                try:
                    frame = self._socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    if self.ignored_subscriptions - self._ignored_at_trim >= _TRIM_AFTER_IGNORED:
                        self._ignored_at_trim = self.ignored_subscriptions
                        _trim_heap()
                    return read
                if not frame or frame[0] not in (_SUBSCRIBE, _UNSUBSCRIBE) or frame[1:] not in _KNOWN_PREFIXES:
                    self.ignored_subscriptions += 1
                    continue
                subscribe, prefix = frame[0] == _SUBSCRIBE, frame[1:]
                # Applies to the peer that sent it (no-op for the unsubscriptions of a peer gone).
                self._socket.setsockopt(zmq.SUBSCRIBE if subscribe else zmq.UNSUBSCRIBE, prefix)
                count = self._subscriptions.get(prefix, 0) + (1 if subscribe else -1)
                if count > 0:
                    self._subscriptions[prefix] = count
                else:
                    self._subscriptions.pop(prefix, None)
                if subscribe and b"status".startswith(prefix):
                    self._status_joined = True
                changes.append((subscribe, prefix.decode("ascii")))
            return batch

    def subscribers(self, topic: str) -> int:
        """How many subscriptions currently match ``topic`` (one per subscriber and topic filter)."""
        self.poll_subscriptions()
        key = topic.encode("ascii")
        with self._lock:
            return sum(n for prefix, n in self._subscriptions.items() if key.startswith(prefix))

    def wants(self, topic: str) -> bool:
        """Whether anybody is subscribed to ``topic`` now (produce heavy topics only then)."""
        return self.subscribers(topic) > 0

    def wait_subscribers(self, topic: str, count: int = 1, timeout_s: float | None = None,
                         stop: threading.Event | None = None) -> bool:
        """Block until ``count`` subscriptions match ``topic``; False on timeout or ``stop``.

        XPUB hears a subscription only after the subscriber's pipe is attached, so a message
        sent after this returns reaches it (no slow-joiner loss).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.subscribers(topic) < count:
            if stop is not None and stop.is_set():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    # -- sending -------------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        data: dict | None = None,
        arrays: dict[str, np.ndarray] | None = None,
        t_start: int | None = None,
        t_end: int | None = None,
        stream: int = 0,
    ) -> bool:
        """Send one message without blocking; return whether libzmq accepted it.

        ``stream`` is the header's stream id (the pipeline's source; 0 for one source). The
        sequence number of ``(topic, stream)`` advances either way, so a message that could not
        be queued shows as a gap to subscribers; failures are counted in ``send_failures``.
        """
        with self._lock:
            if self._closed:
                return False
            # Subscriptions take effect only when read (XPUB_MANUAL): apply a short batch here,
            # so a publisher nobody polls still reaches its subscribers.
            self._drain(_DRAIN_BATCH, [])
            key = topic if stream == 0 else (topic, stream)
            seq = self._seq.get(key, 0)
            frames = protocol.encode(topic, seq, self.publisher_id, data, arrays, t_start, t_end, stream)
            self._seq[key] = seq + 1
            try:
                self._socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.send_failures[topic] += 1
                return False
            self.sent[topic] += 1
            return True

    def start_status(self, provider: Callable[[], dict], interval_s: float = 1.0) -> None:
        """Publish ``status`` with ``provider()`` as data every ``interval_s`` from a thread.

        A new subscription to ``status`` is answered at once, so late joiners learn the class
        names, sensor and model within the polling period (~50 ms), well inside a second.
        """
        self._status_provider = provider
        if self._status_thread is not None:
            return
        self._status_thread = threading.Thread(target=self._status_loop, args=(interval_s,),
                                               name="evstream-status", daemon=True)
        self._status_thread.start()

    def publish_status(self) -> None:
        """Publish one ``status`` message now (no-op without a provider)."""
        if self._status_provider is not None:
            self.publish("status", self._status_provider())

    def _status_loop(self, interval_s: float) -> None:
        next_due = time.monotonic()
        while not self._stop.is_set():
            self.poll_subscriptions(limit=None)
            with self._lock:
                joined, self._status_joined = self._status_joined, False
            now = time.monotonic()
            if joined or now >= next_due:
                self.publish_status()
                next_due = now + interval_s
            self._stop.wait(0.05)

    def close(self) -> None:
        """Stop the status thread, deliver queued messages (up to ``linger_ms``), close. Idempotent."""
        self._stop.set()
        if self._status_thread is not None and self._status_thread is not threading.current_thread():
            self._status_thread.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._socket.close(linger=self._linger_ms)
        if self._auth is not None:
            self._auth.stop()
            self._auth = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_curve_server(socket: zmq.Socket, keypair: tuple[bytes, bytes]) -> None:
    """Make ``socket`` a CURVE server with ``(public, secret)``; the context's ZAP authenticator
    (if any) then decides which clients it admits."""
    socket.curve_publickey, socket.curve_secretkey = keypair
    socket.curve_server = True


def _start_authenticator(context: zmq.Context, clients_dir: str | os.PathLike):
    from zmq.auth.thread import ThreadAuthenticator

    folder = os.fspath(clients_dir)
    if not os.path.isdir(folder):
        raise ConfigError(f"CURVE clients folder {folder}: not a directory")
    auth = ThreadAuthenticator(context)
    auth.start()
    auth.configure_curve(domain="*", location=folder)
    return auth


@dataclass
class TopicStats:
    """What one subscriber saw of one topic: messages received, gaps, messages missing in gaps."""

    received: int = 0
    gaps: int = 0
    dropped: int = 0
    malformed: int = 0  # messages on this topic that did not decode (skipped)


class Subscriber:
    """SUB client of the evstream protocol that detects its own losses.

    Args:
        address: publisher address, e.g. ``tcp://127.0.0.1:5556``.
        topics: topics to subscribe to (:data:`evstream.protocol.TOPICS`).
        context: ZeroMQ context (the publisher's one for ``inproc://``).
        curve_secret_key_file: this client's certificate (public + secret key) for a CURVE server.
        curve_server_key_file: the server's public certificate; needed with the above.
        rcvhwm: receive high-water mark in messages.
        stream: yield only the messages of this stream id (header ``sid``; a pipeline serving
            several sources numbers them from 0) and ``status`` (which speaks for the whole
            pipeline); None: every stream. ZeroMQ filters by topic only, so the other streams'
            messages still arrive and are dropped here, uncounted.

    ``stats[topic]`` counts received messages, sequence gaps and the messages missing in them,
    and the topic's messages that did not decode; sequence numbers are tracked per topic and
    stream, so a subscriber of every stream sees no false gaps. A message from a new publisher
    id (a restarted publisher) restarts the tracking. ``malformed`` counts every message that did not decode,
    whatever its topic: such a message is skipped (never raised out of :meth:`recv` or
    iteration), ``last_malformed`` keeps its one-line reason and ``on_malformed`` (when set) is
    called with the :class:`~evstream.errors.ProtocolError`.
    """

    def __init__(
        self,
        address: str = DEFAULT_PUBLISH,
        topics: tuple[str, ...] | list[str] = ("pred", "status"),
        *,
        context: zmq.Context | None = None,
        curve_secret_key_file: str | os.PathLike | None = None,
        curve_server_key_file: str | os.PathLike | None = None,
        rcvhwm: int = 1000,
        on_malformed: Callable[[ProtocolError], None] | None = None,
        stream: int | None = None,
    ) -> None:
        unknown = [t for t in topics if t not in protocol.TOPICS]
        if unknown:
            raise ConfigError(f"unknown topic(s) {', '.join(unknown)}; topics are {', '.join(protocol.TOPICS)}")
        if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int) or stream < 0):
            raise ConfigError(f"stream: must be a stream id >= 0 or None (every stream), got {stream!r}")
        self.stream = stream
        if (curve_secret_key_file is None) != (curve_server_key_file is None):
            raise ConfigError("CURVE needs both the client's key pair file and the server's public key file")
        self.address = address
        self.topics = tuple(topics)
        self.context = context or zmq.Context.instance()
        self.stats: dict[str, TopicStats] = {t: TopicStats() for t in self.topics}
        self.malformed = 0
        self.last_malformed: str | None = None
        self.on_malformed = on_malformed
        self.publisher: str | None = None
        self._last_seq: dict[tuple[str, int], int] = {}  # (topic, stream id) -> latest seq
        socket = self.context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, rcvhwm)
        if curve_secret_key_file is not None:
            public, secret = _load_keypair(curve_secret_key_file, "CURVE client key file")
            if secret is None:
                socket.close(0)
                raise ConfigError(f"CURVE client key file {os.fspath(curve_secret_key_file)}: holds no secret key")
            server_public, _ = _load_keypair(curve_server_key_file, "CURVE server key file")
            socket.curve_secretkey = secret
            socket.curve_publickey = public
            socket.curve_serverkey = server_public
        for topic in self.topics:
            socket.setsockopt(zmq.SUBSCRIBE, topic.encode("ascii"))
        self._socket = socket
        try:
            _connect(socket, address, "publisher address")
        except ConfigError:
            socket.close(0)
            raise
        self._poller = zmq.Poller()
        self._poller.register(socket, zmq.POLLIN)

    def recv(self, timeout_ms: int | None = None) -> protocol.Message | None:
        """Next decoded message, or None when none arrives within ``timeout_ms`` (None: wait)."""
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            remaining = None if deadline is None else max(0, int((deadline - time.monotonic()) * 1000))
            if not self._poller.poll(remaining):
                return None
            frames = self._socket.recv_multipart(copy=False)
            try:
                msg = protocol.decode([f.buffer for f in frames])
            except ProtocolError as err:
                self._malformed(frames, err)
                continue
            except Exception as err:  # decode is meant to raise ProtocolError only; never let a peer crash us
                self._malformed(frames, ProtocolError(f"message does not decode: {type(err).__name__}"))
                continue
            if self.stream is not None and msg.stream != self.stream and msg.topic != "status":
                continue
            self._track(msg)
            return msg

    def _malformed(self, frames: list, err: ProtocolError) -> None:
        self.malformed += 1
        self.last_malformed = str(err)
        topic = bytes(frames[0].buffer[:16]).decode("ascii", "replace") if frames else ""
        if topic in self.stats:
            self.stats[topic].malformed += 1
        if self.on_malformed is not None:
            self.on_malformed(err)

    def _track(self, msg: protocol.Message) -> None:
        if msg.publisher != self.publisher:
            self.publisher = msg.publisher
            self._last_seq.clear()
        stats = self.stats.setdefault(msg.topic, TopicStats())
        stats.received += 1
        key = (msg.topic, msg.stream)
        last = self._last_seq.get(key)
        if last is not None and msg.seq > last + 1:
            stats.gaps += 1
            stats.dropped += msg.seq - last - 1
        self._last_seq[key] = msg.seq

    def __iter__(self) -> Iterator[protocol.Message]:
        while True:
            msg = self.recv()
            if msg is not None:
                yield msg

    def close(self) -> None:
        """Close the socket. Idempotent."""
        self._socket.close(0)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ControlServer:
    """REP socket on its own thread answering control requests with ``handler(request)``.

    ``handler`` receives the validated request of :func:`evstream.protocol.decode_control`
    (``{"cmd": ..., args}``) and returns the reply's extra fields. A malformed or unknown request,
    or a handler that raises, gets ``{"ok": False, "error": one line}`` (at most
    :data:`MAX_ERROR_CHARS` characters); the server never stops on a bad request.

    Args:
        address: where to bind, or several addresses (e.g. tcp plus ``inproc://`` for an
            in-process dashboard, which needs no key).
        handler: ``request -> extra reply fields``.
        context: ZeroMQ context; a CURVE publisher's one when ``publisher`` is given.
        publisher: when it is a CURVE server, this socket becomes one too, with its key pair,
            in its context, so the publisher's authenticator (allowed clients folder) admits
            the same clients here: a client without the keys gets no reply at all.
    """

    MAX_ERROR_CHARS = 300

    def __init__(self, address: str | list[str] | tuple[str, ...], handler: Callable[[dict], dict | None], *,
                 context: zmq.Context | None = None, publisher: Publisher | None = None) -> None:
        addresses = [address] if isinstance(address, str) else list(address)
        self.address = addresses[0]
        self.addresses = addresses
        keypair = None if publisher is None else publisher.curve_keypair
        if keypair is not None:
            context = publisher.context  # the authenticator serves one context
        self.context = context or zmq.Context.instance()
        self.curve = keypair is not None
        self._handler = handler
        self._stop = threading.Event()
        socket = self.context.socket(zmq.REP)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_CONTROL_REQUEST_BYTES)
        if keypair is not None:
            make_curve_server(socket, keypair)
        try:
            for addr in addresses:
                _bind(socket, addr, "control address")
        except ConfigError:
            socket.close(0)
            raise
        self._socket = socket
        self._thread = threading.Thread(target=self._loop, name="evstream-control", daemon=True)
        self._thread.start()

    def answer(self, raw: bytes) -> dict:
        """The reply to one raw request (also what the socket thread sends)."""
        try:
            request = protocol.decode_control(raw)
            extra = self._handler(request) or {}
        except EvstreamError as err:
            return {"ok": False, "error": self._line(str(err))}
        except Exception as err:  # a bug in a handler must not take the control socket down
            return {"ok": False, "error": self._line(f"{type(err).__name__}: {err}")}
        return {"ok": True, **extra}

    def _line(self, text: str) -> str:
        text = text.splitlines()[0] if text else text
        return text if len(text) <= self.MAX_ERROR_CHARS else text[: self.MAX_ERROR_CHARS - 1] + "…"

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(50):
                continue
            frames = self._socket.recv_multipart()
            reply = self.answer(frames[0] if len(frames) == 1 else b"")
            try:
                payload = msgpack.packb(reply, use_bin_type=True)
            except (TypeError, ValueError) as err:
                payload = msgpack.packb({"ok": False, "error": self._line(f"reply not encodable: {err}")},
                                        use_bin_type=True)
            self._socket.send(payload)
        self._socket.close(0)

    def close(self) -> None:
        """Stop the thread and close the socket. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()


class ControlClient:
    """REQ client of the control socket: ``send("seek", t_us=2_000_000) -> {"ok": True, ...}``.

    Args:
        address: control address, e.g. ``tcp://127.0.0.1:5557``.
        timeout_ms: how long ``send`` waits for the reply.
        context: ZeroMQ context.
        curve_secret_key_file: this client's certificate for a CURVE pipeline (the same as for
            subscribing to its stream).
        curve_server_key_file: the pipeline's public certificate; needed with the above.
    """

    def __init__(self, address: str = DEFAULT_CONTROL, *, timeout_ms: int = 2000,
                 context: zmq.Context | None = None,
                 curve_secret_key_file: str | os.PathLike | None = None,
                 curve_server_key_file: str | os.PathLike | None = None) -> None:
        if (curve_secret_key_file is None) != (curve_server_key_file is None):
            raise ConfigError("CURVE needs both the client's key pair file and the server's public key file")
        self.address = address
        self.timeout_ms = timeout_ms
        self.context = context or zmq.Context.instance()
        self._curve: tuple[bytes, bytes, bytes] | None = None
        if curve_secret_key_file is not None:
            public, secret = _load_keypair(curve_secret_key_file, "CURVE client key file")
            if secret is None:
                raise ConfigError(f"CURVE client key file {os.fspath(curve_secret_key_file)}: holds no secret key")
            server_public, _ = _load_keypair(curve_server_key_file, "CURVE server key file")
            self._curve = (public, secret, server_public)
        self._socket: zmq.Socket | None = None

    def _open(self) -> zmq.Socket:
        if self._socket is None:
            socket = self.context.socket(zmq.REQ)
            socket.setsockopt(zmq.LINGER, 0)
            # A REQ socket with no peer (every handshake refused: a key the server does not admit)
            # would block in send forever; it gives up after the same timeout as the reply.
            socket.setsockopt(zmq.SNDTIMEO, int(self.timeout_ms))
            if self._curve is not None:
                socket.curve_publickey, socket.curve_secretkey, socket.curve_serverkey = self._curve
            _connect(socket, self.address, "control address")
            self._socket = socket
        return self._socket

    def send(self, cmd: str, **args) -> dict:
        """Send one command and return the reply map.

        Raises:
            ProtocolError: no reply within ``timeout_ms`` (the socket is rebuilt for the next call).
        """
        socket = self._open()
        try:
            socket.send(protocol.encode_control(cmd, **args))
        except zmq.Again:
            socket.close(0)
            self._socket = None
            raise ProtocolError(f"control {self.address}: {cmd!r} could not be sent within {self.timeout_ms} ms "
                                "(no pipeline accepted the connection; with CURVE: is this client's key "
                                "admitted?)") from None
        if not socket.poll(self.timeout_ms, zmq.POLLIN):
            # A REQ socket waiting for a reply cannot send again; start over with a new one.
            socket.close(0)
            self._socket = None
            raise ProtocolError(f"control {self.address}: no reply to {cmd!r} within {self.timeout_ms} ms")
        reply = msgpack.unpackb(socket.recv(), raw=False, strict_map_key=False)
        return reply if isinstance(reply, dict) else {"ok": False, "error": "reply is not a map"}

    def close(self) -> None:
        """Close the socket. Idempotent."""
        if self._socket is not None:
            self._socket.close(0)
            self._socket = None

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
