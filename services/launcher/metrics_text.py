"""The Prometheus text exposition format 0.0.4, written by hand: `# HELP`, `# TYPE`, samples.

A family is written whole, in one call, so its HELP and TYPE come once and its samples together.
Label values escape backslash, double quote and line feed; HELP text escapes backslash and line
feed. Histograms are cumulative: `_bucket{le="…"}` up to `le="+Inf"`, then `_sum` and `_count`.
"""

import bisect
import math
from collections.abc import Iterable, Sequence
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = tuple[tuple[str, str], ...]  # (name, value) pairs, in the order written
Kind = Literal["counter", "gauge", "histogram", "untyped"]


class Histogram:
    """Observations counted into fixed upper bounds (seconds, say), with their sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(sorted(bounds))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it), `+Inf` last."""
        found, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            found.append((bound, running))
        return found


def label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def help_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def number(value: float) -> str:
    """A sample value: integers without a fraction, `+Inf`, `-Inf`, `NaN`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def labelled(name: str, labels: Labels) -> str:
    if not labels:
        return name
    pairs = ",".join(f'{key}="{label_value(value)}"' for key, value in labels)
    return f"{name}{{{pairs}}}"


class Exposition:
    """One scrape's text, family by family."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(
        self, name: str, kind: Kind, help_: str, samples: Iterable[tuple[Labels, float]]
    ) -> None:
        """A counter, gauge or untyped family (a counter's name ends in `_total`)."""
        self._head(name, kind, help_)
        self._lines += [f"{labelled(name, labels)} {number(value)}" for labels, value in samples]

    def histograms(self, name: str, help_: str, series: Iterable[tuple[Labels, Histogram]]) -> None:
        """A histogram family: one set of buckets, sum and count per label set."""
        self._head(name, "histogram", help_)
        for labels, histogram in series:
            for bound, count in histogram.cumulative():
                bucket = (*labels, ("le", number(bound)))
                self._lines.append(f"{labelled(name + '_bucket', bucket)} {count}")
            self._lines.append(f"{labelled(name + '_sum', labels)} {number(histogram.total)}")
            self._lines.append(f"{labelled(name + '_count', labels)} {histogram.count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n" if self._lines else ""

    def _head(self, name: str, kind: Kind, help_: str) -> None:
        self._lines.append(f"# HELP {name} {help_text(help_)}")
        self._lines.append(f"# TYPE {name} {kind}")
