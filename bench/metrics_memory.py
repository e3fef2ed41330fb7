"""How much resident memory the Prometheus endpoint adds to the launcher, written two ways: our
small text writer (`services/launcher/metrics_text.py`) and `prometheus-client`.

Each way runs in a fresh process that first imports what the launcher holds anyway (nats-py,
msgspec, uvloop, the bus and config modules), reads its RSS, then imports the writer, sums the
same facts (turns, model calls, tools, tokens) and writes one scrape of five instances and eight
durables, and reads its RSS again. prometheus-client is not a dependency: without it installed
its figure says so (`pip install prometheus-client` to measure it).

    python bench/metrics_memory.py [--events 5000]
"""

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BASELINE = """
import sys
sys.path.insert(0, {root!r})
import nats, nats.js, nats.micro, msgspec, uvloop
import shared.bus, shared.config, shared.layout, shared.lifecycle, shared.messages.events

def rss_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0

before = rss_bytes()
TOOLS = ["shell", "read_file", "write_file", "web_fetch", "pdf_load"]
MODELS = ["main", "fallback"]
"""

OURS = """
from datetime import UTC, datetime
from services.launcher.metrics_events import EventTally
from services.launcher.metrics_scrape import COUNTERS, InstanceStats, EndpointStats
from services.launcher import metrics_scrape
from services.launcher.metrics_text import Exposition
from shared.messages.contract import BusMessage
from shared.messages.events import ModelUsed, ToolEnded, TurnEnded
from shared.messages.history import Usage
encode = msgspec.json.Encoder().encode
tally = EventTally()
at = datetime.now(UTC)
for n in range({events}):
    tally.take(encode(TurnEnded(conversation_id="c", session_id="s", turn_id="t",
                                outcome="answered", duration_s=n % 90, at=at)))
    tally.take(encode(ModelUsed(conversation_id="c", session_id="s", turn_id="t",
                                model=MODELS[n % 2], usage=Usage(input=n, output=n // 3),
                                at=at, duration_s=(n % 30) / 3)))
    tally.take(encode(ToolEnded(conversation_id="c", session_id="s", call_id="x",
                                tool=TOOLS[n % 5], outcome="succeeded", duration_s=n % 7)))
found = [
    InstanceStats(name=name, instance_id=name + "1", started="2025-01-01T00:00:00.000Z",
                  endpoints=[EndpointStats(name="counters",
                                           data={{"handled": 5.0, "rss_bytes": 4e7}})])
    for name in ("conversation", "session", "tools", "delivery", "ingress_telegram")
]
out = Exposition()
metrics_scrape.write_instances(out, found, [s.name for s in found])
tally.write(out)
text = out.text()
print(rss_bytes() - before, len(text))
"""

THEIRS = """
try:
    import prometheus_client
except ImportError:
    print(-1, 0)
    raise SystemExit
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
registry = CollectorRegistry()
turns = Histogram("stellaclaw_turn_duration_seconds", "t", ["outcome"], registry=registry,
                  buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
calls = Histogram("stellaclaw_model_call_duration_seconds", "m", ["model"], registry=registry,
                  buckets=(0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300))
tools = Histogram("stellaclaw_tool_duration_seconds", "x", ["tool", "outcome"],
                  registry=registry,
                  buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800))
tokens = Counter("stellaclaw_model_tokens", "k", ["model", "kind"], registry=registry)
rss = Gauge("stellaclaw_process_resident_memory_bytes", "r", ["service", "instance_id"],
            registry=registry)
handled = Counter("stellaclaw_messages_handled", "h", ["service", "instance_id"],
                  registry=registry)
decode = msgspec.json.decode
for n in range({events}):
    turns.labels("answered").observe(n % 90)
    calls.labels(MODELS[n % 2]).observe((n % 30) / 3)
    tokens.labels(MODELS[n % 2], "input").inc(n)
    tokens.labels(MODELS[n % 2], "output").inc(n // 3)
    tools.labels(TOOLS[n % 5], "succeeded").observe(n % 7)
for name in ("conversation", "session", "tools", "delivery", "ingress_telegram"):
    rss.labels(name, name + "1").set(4e7)
    handled.labels(name, name + "1").inc(5)
text = generate_latest(registry)
print(rss_bytes() - before, len(text))
"""


def measure(body: str, events: int) -> tuple[int, int]:
    code = BASELINE.format(root=str(ROOT)) + body.format(events=events)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    added, size = done.stdout.split()
    return int(added), int(size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="facts of each kind to sum")
    events = parser.parse_args().events
    for name, body in (("small text writer", OURS), ("prometheus-client", THEIRS)):
        added, size = measure(body, events)
        if added < 0:
            print(f"{name:>18}: not installed (pip install prometheus-client to measure it)")
        else:
            print(f"{name:>18}: +{added / 1024 / 1024:.2f} MB RSS, scrape {size} bytes")


if __name__ == "__main__":
    main()
