"""Publisher memory and ``pred`` rate under a subscription flood (issue 17, finding 2).

One evstream :class:`~evstream.publish.Publisher` on 127.0.0.1 with one honest ``pred``
subscriber; a second process (a raw XSUB socket, as a hostile client would use) sends N distinct
subscription prefixes, every other one followed by its unsubscription. The publisher publishes
``pred`` as fast as it can meanwhile. Printed side by side in the same run: the anchor (the same
publishing loop with no flood) and each flood — publisher RSS growth while the flood is queued, after it
has been drained and after the flooding client left, and ``pred`` messages per second received by
the honest subscriber during the flood, as a ratio of the anchor's.

Usage: ``python bench/sub_flood.py [--counts 10000 50000] [--sizes 56 1024]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

from evstream.publish import Publisher, Subscriber  # noqa: E402

FLOOD = """
import sys, time, zmq
address, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = zmq.Context.instance().socket(zmq.XSUB)
s.setsockopt(zmq.SNDHWM, 0)
s.connect(address)
time.sleep(0.2)
for i in range(count):
    s.send(b"\\x01" + ((b"%08d" % i) * 128)[:size])
    if i % 2 == 1:
        s.send(b"\\x00" + ((b"%08d" % i) * 128)[:size])
print("sent", flush=True)
sys.stdin.read()
"""


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def publish_for(pub: Publisher, sub: Subscriber, seconds: float) -> int:
    """Publish ``pred`` for ``seconds``; messages the subscriber received."""
    received, i, end = 0, 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        pub.publish("pred", {"i": i})
        i += 1
        while sub.recv(0) is not None:
            received += 1
        time.sleep(0.0005)
    while sub.recv(100) is not None:
        received += 1
    return received


def run(count: int | None, size: int, seconds: float) -> dict:
    address = f"tcp://127.0.0.1:{free_port()}"
    with Publisher(address) as pub, Subscriber(address, topics=("pred",)) as sub:
        assert pub.wait_subscribers("pred", 1, timeout_s=5)
        publish_for(pub, sub, 0.3)  # warm up
        before = rss_mib()
        if count is None:
            return {"rate": publish_for(pub, sub, seconds) / seconds, "before": before}
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, address, str(count), str(size)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert flood.stdout.readline().strip() == "sent"
            rate = publish_for(pub, sub, seconds) / seconds
            during = rss_mib()
            publish_for(pub, sub, 1.0)  # the drain finishes
            drained = rss_mib()
        finally:
            flood.stdin.close()
            flood.wait()
        publish_for(pub, sub, 1.0)
        left = rss_mib()
        return {"rate": rate, "before": before, "during": during - before, "drained": drained - before,
                "left": left - before, "ignored": pub.ignored_subscriptions, "tracked": dict(pub._subscriptions)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[56, 1024], help="prefix bytes")
    parser.add_argument("--seconds", type=float, default=3.0, help="publishing time per measurement")
    args = parser.parse_args()
    anchor = run(None, 0, args.seconds)
    print(f"anchor (no flood): pred {anchor['rate']:,.0f} msg/s received, publisher RSS {anchor['before']:.0f} MiB")
    for size in args.sizes:
        for count in args.counts:
            r = run(count, size, args.seconds)
            print(f"{count:>6,} distinct {size:>4} B prefixes: pred {r['rate']:,.0f} msg/s "
                  f"({r['rate'] / anchor['rate']:.2f}x anchor); RSS +{r['during']:.1f} MiB during, "
                  f"+{r['drained']:.1f} drained, +{r['left']:.1f} after the client left "
                  f"(from {r['before']:.0f} MiB); ignored {r['ignored']:,}; tracked {r['tracked']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
