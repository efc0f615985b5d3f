"""Paired comparisons over seeds, and the verdict rule the report applies to each claim.

Every setting of a study is trained with the same seeds as its baseline, and a seed fixes the
initialisation and the data order, so a setting and the baseline are compared seed by seed:
the per-seed differences d_s = metric(setting, s) - metric(baseline, s) carry the variance
between seeds that both share once, not twice. :func:`paired` gives their mean with a 95%
Student t interval over seeds, mean +- t(0.975, n - 1) * sd / sqrt(n) (seeds are the
replicates; resampling evaluation clips would leave the seed-to-seed variance out).

Verdicts (:func:`verdict`), for a claim that a setting is "at least as accurate" as the
baseline (on par or better), with a margin of ``MARGIN`` mAP:

- reproduced: the whole interval lies above -MARGIN (no loss larger than the margin);
- not reproduced: the whole interval lies below -MARGIN (a loss larger than the margin);
- inconclusive at this scale: the interval straddles -MARGIN.

For a claim of a cost saving (speed-up, FLOPs or time saved), reproduced when the interval
of the saving lies above 0, not reproduced when it lies below 0, inconclusive otherwise.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

# mAP: a setting "on par" with its baseline loses less than this. The papers give no margin;
# 0.02 is what the headline comparisons here can resolve (their 95% intervals are aimed at a
# half-width of 0.02), about 5% of the embedded scale's mAP.
MARGIN = 0.02
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"

# t(0.975, df) for df = 1..30 (then the normal 1.96 is within 2%).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 seeds (df >= 1); got df={df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True)
class Paired:
    """Mean per-seed difference (setting - baseline) and its 95% t interval."""

    mean: float
    low: float
    high: float
    n: int  # seeds both have
    sd: float  # of the per-seed differences

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}] (n={self.n})"


def paired(setting: Mapping[int, float], baseline: Mapping[int, float]) -> Paired | None:
    """Paired difference of two {seed: value} maps over the seeds both have; None with fewer
    than 2 common seeds (no interval)."""
    seeds = sorted(set(setting) & set(baseline))
    diffs = [setting[s] - baseline[s] for s in seeds
             if not (math.isnan(setting[s]) or math.isnan(baseline[s]))]
    if len(diffs) < 2:
        return None
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = t975(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return Paired(mean, mean - half, mean + half, len(diffs), sd)


def seeds_for_half_width(sd: float, target: float) -> int | None:
    """The fewest seeds whose 95% t interval (as :func:`paired` computes it) is at most
    ``target`` wide on each side, for per-seed differences with standard deviation ``sd``;
    None beyond 1,000 seeds."""
    return next((n for n in range(2, 1001) if t975(n - 1) * sd / math.sqrt(n) <= target), None)


def verdict(p: Paired | None, kind: str = "accuracy", margin: float = MARGIN) -> str:
    """reproduced / not reproduced / inconclusive for ``p`` (see the module doc).

    ``kind`` "accuracy": non-inferiority of a setting by ``margin``; "saving": a saving
    (speed-up - 1, fraction of time or FLOPs saved) above 0.
    """
    if p is None:
        return INCONCLUSIVE
    bound = -margin if kind == "accuracy" else 0.0
    if p.low > bound:
        return REPRODUCED
    if p.high < bound:
        return NOT_REPRODUCED
    return INCONCLUSIVE
