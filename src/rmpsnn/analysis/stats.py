"""95 % intervals for accuracies and for differences between them, so that a claim such as "the
SNN is within 1 % of its ANN" or "soft reset beats hard reset" is stated only when the test set is
large enough to support it.

An accuracy measured on ``n`` test images is a binomial proportion ``k / n``; its interval is
Wilson's score interval.  Two classifiers evaluated on the *same* images are compared pairwise:
only the images on which they disagree carry information, which makes the comparison much
sharper than comparing two independent intervals (McNemar's idea).  The paired interval is
Agresti & Min's (2005) adjusted Wald interval, the unpaired one Newcombe's (1998) hybrid score
interval.  Everything is pure Python (no torch): inputs are counts or sequences of booleans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError

__all__ = [
    "Difference",
    "Interval",
    "mcnemar_p",
    "paired_difference",
    "unpaired_difference",
    "wilson_interval",
    "z_value",
]


def z_value(confidence: float = 0.95) -> float:
    """The two-sided normal quantile: z such that P(|Z| <= z) = ``confidence`` (1.96 for 95 %)."""
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    # invert the normal CDF by bisection on erf (exact to ~1e-12; no scipy needed)
    target, lo, hi = confidence, 0.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if math.erf(mid / math.sqrt(2)) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@dataclass(frozen=True)
class Interval:
    """An accuracy ``k / n`` with its 95 % (or ``confidence``) interval ``[low, high]``."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def text(self, digits: int = 1) -> str:
        """``"51.0 % [48.2, 53.8], n = 1000"``."""
        return f"{100 * self.value:.{digits}f} % [{100 * self.low:.{digits}f}, {100 * self.high:.{digits}f}]"

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class Difference:
    """``a - b`` (fractions, e.g. accuracy of a minus accuracy of b) with its interval; for a
    paired comparison also the discordant counts (``a_only``: images a gets right and b wrong) and
    McNemar's exact two-sided p-value."""

    value: float
    low: float
    high: float
    n: int
    paired: bool
    a_only: int | None = None
    b_only: int | None = None
    p_value: float | None = None
    confidence: float = 0.95

    def text(self, digits: int = 1) -> str:
        """``"-0.4 points [-1.1, +0.3]"``."""
        lo, hi = f"{100 * self.low:+.{digits}f}", f"{100 * self.high:+.{digits}f}"
        return f"{100 * self.value:+.{digits}f} points [{lo}, {hi}]"

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely on one side of 0: the sign of the difference is supported."""
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _check_count(k: int, n: int) -> None:
    if isinstance(k, bool) or isinstance(n, bool) or int(k) != k or int(n) != n:
        raise InputError(f"counts must be integers, got k={k!r}, n={n!r}")
    if n < 1 or not 0 <= k <= n:
        raise InputError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson's score interval for ``k`` successes in ``n`` trials:

    centre = (p + z²/2n) / (1 + z²/n),  half-width = z/(1 + z²/n) · sqrt(p(1-p)/n + z²/4n²),

    with p = k/n.  Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near
    p = 0 or 1 and for small n.
    """
    _check_count(k, n)
    z = z_value(confidence)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends (no rounding residue)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Interval(p, low, high, n, confidence)


def unpaired_difference(k_a: int, n_a: int, k_b: int, n_b: int, confidence: float = 0.95) -> Difference:
    """``k_a/n_a - k_b/n_b`` for two independent samples, with Newcombe's hybrid score interval
    (method 10): from the Wilson intervals [l, u] of each,

    low = d - sqrt((p_a - l_a)² + (u_b - p_b)²),  high = d + sqrt((u_a - p_a)² + (p_b - l_b)²).
    """
    a, b = wilson_interval(k_a, n_a, confidence), wilson_interval(k_b, n_b, confidence)
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Difference(d, max(-1.0, low), min(1.0, high), min(n_a, n_b), False, confidence=confidence)


def mcnemar_p(a_only: int, b_only: int) -> float:
    """McNemar's exact two-sided p-value: under "a and b are equally accurate" each of the
    ``a_only + b_only`` discordant images is a fair coin; p = P(a result at least as uneven)."""
    if min(a_only, b_only) < 0 or int(a_only) != a_only or int(b_only) != b_only:
        raise InputError(f"discordant counts must be integers >= 0, got {a_only!r}, {b_only!r}")
    m, k = a_only + b_only, min(a_only, b_only)
    if m == 0:
        return 1.0
    # in logs: 2.0**m overflows a float from m = 1024 discordant images on, and exact integers
    # take seconds at m = 10 000; log C(m, i) - m log 2 summed with the largest term factored out
    logs = [
        math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2)
        for i in range(k + 1)
    ]
    top = max(logs)
    tail = math.exp(top) * math.fsum(math.exp(v - top) for v in logs)
    return min(1.0, 2 * tail)


def paired_difference(a: Sequence[bool], b: Sequence[bool], confidence: float = 0.95) -> Difference:
    """Accuracy of ``a`` minus accuracy of ``b`` where ``a[i]``/``b[i]`` say whether each got
    image i right (the same images, in the same order).

    With n10 = images only a gets right and n01 = images only b gets right, d = (n10 - n01)/n.
    The interval is Agresti & Min's adjusted Wald interval: add 1/2 to each cell of the 2x2
    table (n' = n + 2), then d' ± z·sqrt((p10' + p01' - d'²)/n'), clipped to [-1, 1].
    """
    if len(a) != len(b):
        raise InputError(f"paired comparison needs the same images: {len(a)} vs {len(b)} results")
    n = len(a)
    if n < 1:
        raise InputError("paired comparison of zero images")
    a_only = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    b_only = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    z = z_value(confidence)
    n_adj = n + 2
    p10, p01 = (a_only + 0.5) / n_adj, (b_only + 0.5) / n_adj
    d_adj = p10 - p01
    half = z * math.sqrt(max(p10 + p01 - d_adj * d_adj, 0.0) / n_adj)
    return Difference(
        (a_only - b_only) / n,
        max(-1.0, d_adj - half),
        min(1.0, d_adj + half),
        n,
        True,
        a_only,
        b_only,
        mcnemar_p(a_only, b_only),
        confidence,
    )
