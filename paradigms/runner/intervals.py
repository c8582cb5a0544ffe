"""Several seeds of one configuration as a mean, a standard deviation and a 95% interval.

One seed decides little: on digits' 270 test images one image is 0.37 points. The sweep report
(``runner/sweep_report.py``) and the bench scripts (``bench/``) summarise repeated runs here, so
they agree on what an interval is: Student's t interval of the mean over the seeds, and for a
comparison the same interval of the per-seed differences (paired by seed, which removes what
the two models share: the split, the initial weights' luck).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values, their sample standard deviation and the ``confidence``
    interval of the mean (``low``, ``high``: nan with one value)."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.4f}"
        return f"{self.mean:.4f} ± {self.half_width:.4f}"


def interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Student's t interval of the mean of ``values`` (finite ones; nan ones are dropped)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, nan, 0)
    mean = sum(kept) / n
    if n == 1:
        return Interval(mean, float("nan"), float("nan"), float("nan"), 1)
    from scipy import stats

    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (n - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, mean - half, mean + half, n)


def paired(first: Sequence[float], second: Sequence[float]) -> Interval:
    """The interval of ``first[i] - second[i]``: two models measured on the same seeds."""
    if len(first) != len(second):
        raise ValueError(f"paired values need as many of each: {len(first)} vs {len(second)}")
    return interval(a - b for a, b in zip(first, second, strict=True))
