"""The study's statistics: paired intervals over seeds, the verdict rule, equal-budget mAP."""

import math

import pandas as pd
import pytest

from passt_lib.study.analysis import map_at_equal_cost, schedule_used
from passt_lib.study.stats import MARGIN, Paired, paired, seeds_for_half_width, t975, verdict


def test_paired_interval_is_the_t_interval_of_the_per_seed_differences():
    setting = {0: 0.30, 1: 0.35, 2: 0.31, 3: 0.40}
    baseline = {0: 0.28, 1: 0.30, 2: 0.33, 3: 0.36, 9: 0.99}  # seed 9: not in both, left out
    p = paired(setting, baseline)
    d = [0.02, 0.05, -0.02, 0.04]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    half = 3.182 * sd / 2  # t(0.975, 3) * sd / sqrt(4)
    assert p.n == 4 and p.mean == pytest.approx(mean)
    assert (p.low, p.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert p.half_width == pytest.approx(half)
    assert paired({0: 0.3}, {0: 0.2}) is None  # one seed: no interval


def _diffs_with_sd(k: int, sd: float) -> dict[int, float]:
    z = [float(i) for i in range(k)]
    m = sum(z) / k
    scale = sd / math.sqrt(sum((x - m) ** 2 for x in z) / (k - 1))
    return {i: (x - m) * scale for i, x in enumerate(z)}


def test_seeds_for_a_half_width_match_the_interval_paired_gives():
    n = seeds_for_half_width(0.041, 0.02)
    assert n == 19
    half = {k: paired(_diffs_with_sd(k, 0.041), dict.fromkeys(range(k), 0.0)).half_width
            for k in (n - 1, n)}
    assert half[n] <= 0.02 < half[n - 1]  # the fewest seeds that reach the target
    assert seeds_for_half_width(1.0, 0.001) is None


def test_t_quantiles_and_their_limits():
    assert t975(1) == 12.706 and t975(7) == 2.365 and t975(100) == 1.96
    with pytest.raises(ValueError, match="at least 2 seeds"):
        t975(0)


@pytest.mark.parametrize("low, high, kind, want", [
    (-MARGIN / 2, 0.03, "accuracy", "reproduced"),                 # no loss larger than the margin
    (-MARGIN + 1e-6, 0.03, "accuracy", "reproduced"),              # just inside the line
    (-MARGIN - 0.07, -MARGIN - 0.01, "accuracy", "not reproduced"),  # a larger loss, surely
    (-MARGIN - 0.03, 0.01, "accuracy", "inconclusive"),            # straddles -MARGIN
    (-MARGIN - 1e-6, 0.03, "accuracy", "inconclusive"),            # just across the line
    (0.05, 0.10, "saving", "reproduced"),
    (-0.10, -0.01, "saving", "not reproduced"),
    (-0.01, 0.10, "saving", "inconclusive"),
])
def test_verdict_rule(low, high, kind, want):
    assert verdict(Paired((low + high) / 2, low, high, 8, 0.01), kind) == want


@pytest.mark.parametrize("margin", [0.01, 0.05])
def test_verdict_follows_the_margin_it_is_given(margin):
    p = Paired(0.0, -0.03, 0.03, 8, 0.01)  # a 0.03 loss is inside 0.05, outside 0.01
    assert verdict(p, "accuracy", margin) == ("reproduced" if margin > 0.03 else "inconclusive")


def _runs(curves: dict[int, list[tuple[float, float]]]) -> pd.DataFrame:
    """Runs whose histories are (train_flops of the epoch, eval_map after it) per seed."""
    return pd.DataFrame({"seed": list(curves), "_metrics": [
        {"history": [{"train_flops": f, "eval_map": m} for f, m in h]} for h in curves.values()]})


def test_map_at_equal_cost_interpolates_the_baseline_seed_by_seed():
    # baseline: 10 FLOPs an epoch, mAP 0.1, 0.2, 0.3; the setting spends 15 (seed 0) and
    # 25 (seed 1) in all, and ends at 0.40 / 0.30
    base = _runs({0: [(10, 0.1), (10, 0.2), (10, 0.3)], 1: [(10, 0.1), (10, 0.2), (10, 0.3)],
                  2: [(10, 0.1), (10, 0.2)]})
    setting = _runs({0: [(5, 0.2), (10, 0.40)], 1: [(20, 0.1), (5, 0.30)],
                     2: [(50, 0.5)]})  # seed 2 spends more than its baseline's curve: left out
    p = map_at_equal_cost(setting, base)
    assert p.n == 2
    assert p.mean == pytest.approx(((0.40 - 0.15) + (0.30 - 0.25)) / 2)
    # without per-epoch costs there is nothing to compare
    no_cost = pd.DataFrame({"seed": [0, 1], "_metrics": [{"history": [{"eval_map": 0.1}]}] * 2})
    assert map_at_equal_cost(no_cost, base) is None


def test_schedule_used_names_fine_only_training_by_its_epochs():
    assert schedule_used({"schedule": "pool:4x3,full:3", "epochs": 6}) == "pool:4x3,full:3"
    assert schedule_used({"schedule": None, "epochs": 6}) == "full:6"
