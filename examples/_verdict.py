"""Pre-registered verdicts for the paper-reproduction examples.

Every example states its claim as a statistic, a control and a decision rule before it
computes anything; the statistic is measured once per seed, summarised by its mean and a
bootstrap interval, and the rule turns the numbers into one of three verdicts:

* ``"reproduced"``: the interval lies where the claim says;
* ``"not reproduced"``: the interval lies where the claim says it should not (the opposite
  direction, or outside the stated band);
* ``"inconclusive"``: the interval straddles the boundary (too few seeds, too much noise).

The rules are functions of the numbers alone, so a test can feed them numbers where the claim
is false and see "not reproduced". Nothing here knows which verdict an example hopes for.

Example:
    >>> est = estimate([0.8, 0.9, 1.1, 1.0, 0.95], seed=0)
    >>> round(est.mean, 3), est.low < est.mean < est.high, est.n
    (0.95, True, 5)
    >>> above(estimate([2.0, 2.1, 1.9]), 1.0)
    'reproduced'
    >>> above(estimate([0.2, 0.1, 0.3]), 1.0)
    'not reproduced'
    >>> within(estimate([0.95, 1.05, 1.0]), 0.67, 1.5)
    'reproduced'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "VERDICTS",
    "Claim",
    "Estimate",
    "above",
    "at_least",
    "below",
    "estimate",
    "judge_claims",
    "paired_difference",
    "record",
    "within",
]

VERDICTS = ("reproduced", "not reproduced", "inconclusive")
LEVEL = 0.95  # two-sided interval level of every example
N_BOOT = 4000  # bootstrap resamples


@dataclass(frozen=True)
class Estimate:
    """The mean of a per-seed statistic and its bootstrap percentile interval.

    Attributes:
        mean: the mean over seeds.
        low, high: the ``LEVEL`` percentile interval of the mean (a single seed: both equal
            the value, and every rule says "inconclusive").
        values: the per-seed values.
    """

    mean: float
    low: float
    high: float
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    def as_dict(self) -> dict[str, float | list[float]]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "values": list(self.values)}

    def __str__(self) -> str:
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


def estimate(values: Sequence[float], *, seed: int = 0) -> Estimate:
    """Mean and bootstrap interval (percentile, ``N_BOOT`` resamples, seeded) of ``values``.

    Raises:
        ValueError: no value, or a value that is not finite.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"values: expected finite numbers, one per seed, got {values!r}")
    if v.size == 1:
        return Estimate(float(v[0]), float(v[0]), float(v[0]), (float(v[0]),))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(N_BOOT, v.size))].mean(axis=1)
    alpha = (1 - LEVEL) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(float(v.mean()), float(low), float(high), tuple(float(x) for x in v))


def paired_difference(claim: Sequence[float], control: Sequence[float], *, seed: int = 0):
    """The per-seed difference ``claim - control`` as an :class:`Estimate` (one seed: one
    pair)."""
    a, b = np.asarray(claim, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"claim, control: one value per seed each, got {a.shape} and {b.shape}")
    return estimate(a - b, seed=seed)


def _decide(est: Estimate, holds: bool, fails: bool) -> str:
    if est.n < 2:
        return "inconclusive"
    return "reproduced" if holds else "not reproduced" if fails else "inconclusive"


def above(est: Estimate, threshold: float) -> str:
    """The claim "the statistic exceeds ``threshold``": reproduced when the whole interval is
    above it, not reproduced when the whole interval is at or below it."""
    return _decide(est, est.low > threshold, est.high <= threshold)


def below(est: Estimate, threshold: float) -> str:
    """The claim "the statistic is below ``threshold``" (the mirror of :func:`above`)."""
    return _decide(est, est.high < threshold, est.low >= threshold)


def at_least(est: Estimate, threshold: float) -> str:
    """The claim "the statistic is at least ``threshold``" for shares and scores that can
    reach it exactly (a share of 1.0): reproduced when the interval's lower end reaches it."""
    return _decide(est, est.low >= threshold, est.high < threshold)


def within(est: Estimate, low: float, high: float) -> str:
    """The claim "the statistic lies in ``[low, high]``" (e.g. a ratio near 1): reproduced
    when the interval lies inside, not reproduced when it lies wholly outside."""
    inside = low <= est.low and est.high <= high
    outside = est.high < low or est.low > high
    return _decide(est, inside, outside)


@dataclass(frozen=True)
class Claim:
    """A paper's claim as this example tests it, stated before anything is computed.

    Attributes:
        key: a short name (the key in ``summary.json["claims"]``).
        paper: what the paper says, in a sentence.
        statistic: what is measured per seed.
        control: what the statistic is compared with, and why it is the right baseline.
        rule: the decision rule, in words (the code that applies it is named in the
            example).
    """

    key: str
    paper: str
    statistic: str
    control: str
    rule: str

    def describe(self) -> str:
        """The pre-registration, as printed before the runs start."""
        return (
            f"claim {self.key}: {self.paper}\n  statistic: {self.statistic}\n"
            f"  control:   {self.control}\n  rule:      {self.rule}"
        )


def judge_claims(
    claims: Sequence[Claim],
    rules: Mapping[str, Callable[[Estimate], str]],
    stats: Mapping[str, tuple],
) -> dict[str, dict]:
    """Each claim's estimate, its control's, and both verdicts under the claim's rule.

    ``stats[key]`` is ``(value, control)``; each is one number per seed (:func:`estimate`)
    or a pair of such lists (:func:`paired_difference`, first minus second).
    """

    def est(x: Any) -> Estimate:
        return paired_difference(*x) if isinstance(x, tuple) else estimate(x)

    out = {}
    for claim in claims:
        value, control = (est(x) for x in stats[claim.key])
        rule = rules[claim.key]
        out[claim.key] = {
            "value": value,
            "control": control,
            "verdict": rule(value),
            "control_verdict": rule(control),
        }
    return out


def record(claim: Claim, value: Estimate, control: Estimate | None, verdict: str) -> dict:
    """The claim's numbers and verdict for ``summary.json`` (and print them)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict: expected one of {VERDICTS}, got {verdict!r}")
    versus = f"; control {control}" if control is not None else ""
    print(f"{claim.key}: {value}{versus} -> {verdict}")
    return {
        "value": value.as_dict(),
        "control": None if control is None else control.as_dict(),
        "verdict": verdict,
    }


def all_hold(*verdicts: str) -> str:
    """The claim "every part holds", from the verdicts of its parts: reproduced when every
    part is, not reproduced when any part is not, else inconclusive (e.g. a part that could
    not be measured: pass ``"inconclusive"`` for it).

    Example:
        >>> all_hold("reproduced", "reproduced"), all_hold("reproduced", "not reproduced")
        ('reproduced', 'not reproduced')
        >>> all_hold("reproduced", "inconclusive")
        'inconclusive'
    """
    if not verdicts or any(v not in VERDICTS for v in verdicts):
        raise ValueError(f"verdicts: expected one or more of {VERDICTS}, got {verdicts!r}")
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if all(v == "reproduced" for v in verdicts) else "inconclusive"
