"""The verdict rules of the paper reproductions (``examples/_verdict.py``): intervals that
cover, rules on their boundaries, and "inconclusive" when one seed is all there is."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
from _verdict import (  # noqa: E402
    VERDICTS,
    Claim,
    Estimate,
    above,
    at_least,
    below,
    estimate,
    paired_difference,
    record,
    within,
)


def interval(low: float, high: float, n: int = 5) -> Estimate:
    """An estimate with a chosen interval (the rules read only ``low``, ``high`` and ``n``)."""
    return Estimate(0.5 * (low + high), low, high, tuple(np.linspace(low, high, n)))


def test_estimate_mean_and_interval():
    values = [0.8, 0.9, 1.1, 1.0, 0.95]
    est = estimate(values, seed=0)
    assert est.mean == pytest.approx(np.mean(values), rel=1e-15)
    assert min(values) <= est.low < est.mean < est.high <= max(values)
    assert est.values == tuple(values) and est.n == 5
    assert estimate(values, seed=0) == est  # seeded: the same interval every time
    assert estimate([2.0, 2.0, 2.0]) == Estimate(2.0, 2.0, 2.0, (2.0, 2.0, 2.0))
    assert est.as_dict() == {"mean": est.mean, "low": est.low, "high": est.high, "values": values}


def test_intervals_cover_the_mean_at_about_their_level():
    """Bootstrap percentile intervals of the mean of 20 normal draws cover the true mean
    about 95 % of the time (percentile intervals run a little short for small samples)."""
    rng = np.random.default_rng(1)
    samples = rng.normal(3.0, 2.0, size=(300, 20))
    hits = [
        est.low <= 3.0 <= est.high for est in (estimate(x, seed=i) for i, x in enumerate(samples))
    ]
    assert 0.88 <= np.mean(hits) <= 0.99


def test_interval_narrows_with_more_seeds():
    rng = np.random.default_rng(2)
    few, many = estimate(rng.normal(size=5)), estimate(rng.normal(size=500))
    assert many.high - many.low < 0.5 * (few.high - few.low)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")], [[1.0, 2.0]]])
def test_estimate_refuses_what_is_not_one_finite_value_per_seed(bad):
    with pytest.raises(ValueError, match="values"):
        estimate(bad)


def test_paired_difference_is_the_estimate_of_the_differences():
    a, b = [3.0, 4.0, 5.5, 2.0], [1.0, 1.5, 2.0, 2.5]
    assert paired_difference(a, b, seed=3) == estimate(np.subtract(a, b), seed=3)
    with pytest.raises(ValueError, match="one value per seed"):
        paired_difference([1.0, 2.0], [1.0])


def test_above_and_below_on_their_boundaries():
    assert above(interval(1.01, 2.0), 1.0) == "reproduced"
    assert above(interval(1.0, 2.0), 1.0) == "inconclusive"  # the interval touches it
    assert above(interval(0.5, 1.0), 1.0) == "not reproduced"  # at or below: fails
    assert above(interval(0.5, 1.01), 1.0) == "inconclusive"
    assert below(interval(0.0, 0.99), 1.0) == "reproduced"
    assert below(interval(0.0, 1.0), 1.0) == "inconclusive"
    assert below(interval(1.0, 2.0), 1.0) == "not reproduced"


def test_at_least_reaches_a_share_of_one():
    assert at_least(estimate([1.0, 1.0, 1.0]), 1.0) == "reproduced"
    assert at_least(interval(0.8, 1.0), 0.8) == "reproduced"  # the boundary counts
    assert at_least(interval(0.79, 1.0), 0.8) == "inconclusive"
    assert at_least(interval(0.5, 0.79), 0.8) == "not reproduced"
    assert at_least(interval(0.5, 0.8), 0.8) == "inconclusive"


def test_within_a_band():
    assert within(interval(2 / 3, 3 / 2), 2 / 3, 3 / 2) == "reproduced"  # inclusive ends
    assert within(interval(0.9, 1.1), 2 / 3, 3 / 2) == "reproduced"
    assert within(interval(0.5, 0.9), 2 / 3, 3 / 2) == "inconclusive"  # straddles 2/3
    assert within(interval(1.2, 2.0), 2 / 3, 3 / 2) == "inconclusive"  # straddles 3/2
    assert within(interval(0.5, 2.0), 2 / 3, 3 / 2) == "inconclusive"  # wider than the band
    assert within(interval(0.1, 0.6), 2 / 3, 3 / 2) == "not reproduced"  # wholly below
    assert within(interval(1.6, 3.0), 2 / 3, 3 / 2) == "not reproduced"  # wholly above
    assert within(interval(0.1, 2 / 3), 2 / 3, 3 / 2) == "inconclusive"  # touches the band


@pytest.mark.parametrize("value", [-5.0, 0.5, 1.0, 10.0])
def test_one_seed_is_inconclusive_whatever_its_value(value):
    est = estimate([value])
    assert (est.mean, est.low, est.high, est.n) == (value, value, value, 1)
    rules = [above(est, 0.0), below(est, 0.0), at_least(est, 0.8), within(est, 0.9, 1.1)]
    assert set(rules) == {"inconclusive"}
    assert above(paired_difference([value + 100.0], [value]), 0.0) == "inconclusive"


def test_the_rules_answer_only_with_verdicts():
    rng = np.random.default_rng(4)
    for _ in range(50):
        est = estimate(rng.normal(size=int(rng.integers(1, 8))))
        for verdict in (above(est, 0), below(est, 0), at_least(est, 0), within(est, -1, 1)):
            assert verdict in VERDICTS


def test_record_and_claim(capsys):
    claim = Claim("k", "the paper says so", "per seed: x", "a baseline", "above(x, 0)")
    text = claim.describe()
    for part in ("claim k:", "the paper says so", "per seed: x", "a baseline", "above(x, 0)"):
        assert part in text
    value, control = estimate([1.0, 2.0, 3.0]), estimate([0.1, -0.1, 0.0])
    got = record(claim, value, control, above(value, 0.0))
    assert got == {"value": value.as_dict(), "control": control.as_dict(), "verdict": "reproduced"}
    assert "k: 2 [" in capsys.readouterr().out
    assert record(claim, value, None, "inconclusive")["control"] is None
    with pytest.raises(ValueError, match="verdict"):
        record(claim, value, control, "holds")
