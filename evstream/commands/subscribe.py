"""``python main.py subscribe ADDR``: print what a running pipeline publishes.

Human lines by default (one per label change, plus status changes); ``--json`` prints one JSON
object per received message and flushes each line, for scripts. Sequence gaps (messages the
publisher dropped for this subscriber) are reported as they are seen and in the closing summary;
a message that does not decode is skipped with one line on stderr. ``--stream N`` keeps only
stream N of a pipeline serving several sources (header ``sid``; ``status`` always passes).

It ends when the publisher reports ``ended`` (after draining what is still queued for a moment),
after ``--count`` predictions, after ``--timeout`` seconds without any message, or on Ctrl-C.

Exit codes: 0 when the publisher ended, ``--count`` was reached or on Ctrl-C; 1 when
``--timeout`` passed first (the stream went silent before it ended); 2 for a bad option,
address or key file.
"""

from __future__ import annotations

import argparse
import json
import sys

from evstream import protocol
from evstream.errors import ConfigError

EXAMPLES = """\
exit codes: 0 the publisher ended, --count reached, or Ctrl-C; 1 --timeout passed first;
2 a bad option, address or key file

examples:
  python main.py subscribe tcp://127.0.0.1:5556
  python main.py subscribe tcp://127.0.0.1:5556 --json --topics pred,stats --count 100
  python main.py subscribe tcp://127.0.0.1:5556 --stream 1      one stream of a pipeline of several sources
  python main.py subscribe tcp://HOST:5556 --curve-secret keys/client.key_secret --curve-server keys/server.key
"""


DRAIN_MS = 300  # after the publisher's "ended": how long to wait for messages still on their way


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?", default="tcp://127.0.0.1:5556",
                        help="publisher address (default: tcp://127.0.0.1:5556)")
    parser.add_argument("--json", action="store_true", help="one JSON object per message (arrays as lists)")
    parser.add_argument("--topics", default="pred,status",
                        help=f"comma-separated topics among {','.join(protocol.TOPICS)} (default: pred,status)")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="exit after N pred messages")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="exit after S seconds without any message (default: wait forever)")
    parser.add_argument("--all", action="store_true", help="human mode: print every prediction, not only changes")
    parser.add_argument("--stream", type=int, default=None, metavar="N",
                        help="only stream N of a pipeline serving several sources (status always; default: every "
                             "stream, human lines prefixed [N] when the pipeline has several)")
    parser.add_argument("--curve-secret", metavar="FILE", help="this client's key pair file (NAME.key_secret)")
    parser.add_argument("--curve-server", metavar="FILE", help="the publisher's public key file (NAME.key)")


def message_json(msg: protocol.Message) -> dict:
    """A decoded message as a JSON-ready map (arrays as nested lists)."""
    return {
        "topic": msg.topic,
        "seq": msg.seq,
        "pub": msg.publisher,
        "stream": msg.stream,
        "t_start": msg.t_start,
        "t_end": msg.t_end,
        "send_ns": msg.send_ns,
        "data": msg.data,
        "arrays": {name: a.tolist() for name, a in msg.arrays.items()},
    }


def _human(msg: protocol.Message, every: bool) -> str | None:
    t = "" if msg.t_end is None else f"[{msg.t_end / 1e6:10.3f} s] "
    d = msg.data
    if msg.topic == "pred":
        if not (every or d.get("changed")):
            return None
        return f"{t}{d.get('name', '?'):<24} conf {d.get('confidence', 0.0):.2f}  infer {d.get('infer_ms', 0.0):.1f} ms"
    if msg.topic == "status":
        return None
    if msg.topic == "stats":
        return (f"{t}windows {d.get('windows')}  dropped {d.get('dropped_windows')}  resets {d.get('resets')}  "
                f"{d.get('event_rate', 0.0) / 1e3:.0f} kev/s  rt x{d.get('realtime_factor', 0.0):.2f}")
    shapes = ", ".join(f"{k} {list(a.shape)}" for k, a in msg.arrays.items())
    return f"{t}{msg.topic}: {shapes}"


def _report_malformed(err: Exception) -> None:
    """One stderr line per message that does not decode (it is skipped; stdout stays clean for --json)."""
    print(f"subscribe: skipped a malformed message: {err}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from evstream.publish import Subscriber

    topics = tuple(t.strip() for t in args.topics.split(",") if t.strip())
    if not topics:
        raise ConfigError("--topics: give at least one topic")
    if args.count is not None and args.count < 1:
        raise ConfigError(f"--count must be >= 1, got {args.count}")
    if args.stream is not None and args.stream < 0:
        raise ConfigError(f"--stream must be >= 0, got {args.stream}")
    # status always comes, to see the publisher end; it is shown only when asked for.
    listen = topics if "status" in topics else (*topics, "status")
    sub = Subscriber(args.address, listen, curve_secret_key_file=args.curve_secret,
                     curve_server_key_file=args.curve_server, on_malformed=_report_malformed, stream=args.stream)
    out = sys.stdout
    preds = 0
    last_state = None
    several = False  # the publisher's status lists more than one stream: human lines say which
    reported_gaps: dict[str, int] = {}
    timeout_ms = None if args.timeout is None else int(args.timeout * 1000)
    ended = timed_out = False
    try:
        while args.count is None or preds < args.count:
            # After "ended", drain what is still on its way for a moment, then stop.
            msg = sub.recv(DRAIN_MS if ended else timeout_ms)
            if msg is None:
                timed_out = not ended
                break
            if msg.topic not in topics:
                ended = ended or msg.data.get("state") == "ended"
                continue
            if args.json:
                out.write(json.dumps(message_json(msg)) + "\n")
            else:
                if msg.topic == "status":
                    streams = msg.data.get("streams")
                    several = isinstance(streams, list) and len(streams) > 1
                    state = (msg.data.get("state"), msg.data.get("message"))
                    if state != last_state:
                        last_state = state
                        note = f" ({state[1]})" if state[1] else ""
                        out.write(f"status: {state[0]}{note}  model {msg.data.get('model')}  "
                                  f"source {msg.data.get('source')}\n")
                line = _human(msg, args.all)
                if line:
                    out.write((f"[{msg.stream}] " if several and msg.topic != "status" else "") + line + "\n")
                stats = sub.stats[msg.topic]
                if stats.gaps != reported_gaps.get(msg.topic, 0):
                    reported_gaps[msg.topic] = stats.gaps
                    out.write(f"gap on {msg.topic}: {stats.dropped} message(s) missed so far\n")
            out.flush()
            if msg.topic == "pred":
                preds += 1
            elif msg.topic == "status" and msg.data.get("state") == "ended":
                ended = True
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
    summary = "  ".join(f"{t}: {s.received} received, {s.gaps} gaps, {s.dropped} missed"
                        for t, s in sub.stats.items() if t in topics)
    print(f"subscribe: {summary}" + (f"  malformed {sub.malformed}" if sub.malformed else ""), file=sys.stderr)
    if timed_out:
        print(f"subscribe: {args.address}: no message for {args.timeout:g} s before the stream ended "
              f"({preds} prediction(s) received)", file=sys.stderr)
        return 1
    return 0
