"""The facts on SC_EVENTS, summed since the metrics server started: turn, model call and tool
durations (histograms), tokens and cost per model, dead letters and bad messages.

Labels stay bounded: a model name, a tool name, an outcome, a service, a stream. Never a
conversation, session or turn. Bad payloads on the events subjects are counted and skipped.
"""

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import assert_never

import msgspec

from services.launcher.metrics_text import Exposition, Histogram, Labels
from shared.messages.events import (
    EVENT,
    BadMessage,
    DeadLettered,
    Event,
    ModelUsed,
    ToolEnded,
    TurnEnded,
)
from shared.messages.history import USAGE_COUNTS

TURN_BOUNDS_S = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
MODEL_BOUNDS_S = (0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
TOOL_BOUNDS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
MAX_SERIES = 200  # label sets per family; past it, new ones are counted as `other`
log = logging.getLogger(__name__)


class EventTally:
    """What the events said so far, by bounded labels."""

    def __init__(self) -> None:
        self.turns: dict[Labels, Histogram] = {}
        self.model_calls: dict[Labels, Histogram] = {}
        self.tools: dict[Labels, Histogram] = {}
        self.tokens: Counter[Labels] = Counter()
        self.cost_usd: defaultdict[Labels, float] = defaultdict(float)
        self.dead_letters: Counter[Labels] = Counter()
        self.bad_messages: Counter[Labels] = Counter()
        self.skipped = 0

    def take(self, data: bytes) -> None:
        """Count one fact; a payload that is no known event is counted as skipped."""
        try:
            event: Event = EVENT.decode(data)
        except msgspec.DecodeError as exc:
            self.skipped += 1
            log.debug("skipped an event that does not decode: %s", exc)
            return
        match event:
            case TurnEnded():
                _observe(self.turns, (("outcome", event.outcome),), TURN_BOUNDS_S, event.duration_s)
            case ModelUsed():
                self._model_used(event)
            case ToolEnded():
                tool: Labels = (("tool", event.tool), ("outcome", event.outcome))
                _observe(self.tools, tool, TOOL_BOUNDS_S, event.duration_s)
            case DeadLettered():
                lane: Labels = (("service", event.service), ("stream", event.stream))
                self.dead_letters[bounded(lane, self.dead_letters)] += 1
            case BadMessage():
                self.bad_messages[bounded((("service", event.service),), self.bad_messages)] += 1
            case unhandled:
                assert_never(unhandled)

    def _model_used(self, event: ModelUsed) -> None:
        model = bounded((("model", event.model),), self.cost_usd)
        if event.duration_s > 0:  # 0: a session that does not measure it yet
            _observe(self.model_calls, model, MODEL_BOUNDS_S, event.duration_s)
        for kind in USAGE_COUNTS:
            self.tokens[(*model, ("kind", kind))] += getattr(event.usage, kind)
        self.cost_usd[model] += event.usage.cost or 0.0

    def write(self, out: Exposition) -> None:
        out.histograms(
            "stellaclaw_turn_duration_seconds",
            "Turns from their start (or resumption) to their end, by outcome.",
            sorted(self.turns.items()),
        )
        out.histograms(
            "stellaclaw_model_call_duration_seconds",
            "Model calls from asking to the answer, retries included, by the model that answered.",
            sorted(self.model_calls.items()),
        )
        out.family(
            "stellaclaw_model_tokens_total",
            "counter",
            "Tokens of model calls, by model and kind (reasoning is a part of output).",
            sorted(self.tokens.items()),
        )
        out.family(
            "stellaclaw_model_cost_usd_total",
            "counter",
            "Cost of model calls in US dollars, where known, by model.",
            sorted(self.cost_usd.items()),
        )
        out.histograms(
            "stellaclaw_tool_duration_seconds",
            "Tool calls from their start to their result, by tool and outcome.",
            sorted(self.tools.items()),
        )
        self._write_problems(out)

    def _write_problems(self, out: Exposition) -> None:
        out.family(
            "stellaclaw_dead_letters_total",
            "counter",
            "Messages terminated after bus.max_deliver failed handlings, by service and stream.",
            sorted(self.dead_letters.items()),
        )
        out.family(
            "stellaclaw_bad_messages_total",
            "counter",
            "Bus messages a service could not decode or refused, by service.",
            sorted(self.bad_messages.items()),
        )
        out.family(
            "stellaclaw_metrics_skipped_events_total",
            "counter",
            "Payloads on the events subjects that were no known event (skipped).",
            [((), self.skipped)],
        )


def _observe(
    histograms: dict[Labels, Histogram], labels: Labels, bounds: tuple[float, ...], value: float
) -> None:
    labels = bounded(labels, histograms)
    found = histograms.get(labels)
    if found is None:
        found = histograms[labels] = Histogram(bounds)
    found.observe(value)


def bounded(labels: Labels, known: Mapping[Labels, object]) -> Labels:
    """`labels`, or every value `other` once a family has MAX_SERIES label sets (a model that
    makes up tool names cannot grow the scrape without end)."""
    if labels in known or len(known) < MAX_SERIES:
        return labels
    return tuple((name, "other") for name, _ in labels)
