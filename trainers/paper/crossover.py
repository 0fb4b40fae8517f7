"""Where one accuracy-against-compute curve overtakes another: computed, not eyeballed.

Both curves are piecewise linear in ``log(x)`` (x: tokens, seconds or budget ``n``)
through their measured points; they are compared only where both were measured (the
overlap of their x ranges), at every breakpoint of either curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Curve = Sequence[tuple[float, float]]  # (x > 0, accuracy)


def interpolate(curve: Curve, x: float) -> float:
    """The curve's value at ``x`` (linear in log x; ``x`` within the curve's range).

    >>> interpolate([(10, 0.2), (1000, 0.6)], 100)
    0.4
    """
    pts = sorted(curve)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            if x1 == x0:
                return y1
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return round(y0 + t * (y1 - y0), 12)
    if len(pts) == 1 and pts[0][0] == x:
        return pts[0][1]
    raise ValueError(f"x={x} is outside the curve's range [{pts[0][0]}, {pts[-1][0]}].")


def crossings(challenger: Curve, incumbent: Curve) -> dict[str, object]:
    """Where ``challenger`` overtakes ``incumbent`` (and where it falls behind again).

    Returns ``overlap`` (the x range both cover, or None), ``overtakes`` (x values where
    the challenger goes from behind-or-tied to ahead), ``falls_behind`` (the reverse) and
    ``summary``: "overtakes at x=..." or "none in range (...)" saying whether the
    challenger is never behind, never ahead, tied throughout or falls behind, or "no
    overlap". A tie followed by a lead counts from the x where the tie began; a touch
    (behind, tied, behind) is no crossing; a lead from the start is no overtaking.

    >>> crossings([(10, 0.1), (100, 0.5)], [(10, 0.3), (100, 0.3)])["overtakes"]
    [31.6228]
    """
    if len(challenger) < 1 or len(incumbent) < 1:
        raise ValueError("Both curves need at least one measured point.")
    lo = max(min(x for x, _ in challenger), min(x for x, _ in incumbent))
    hi = min(max(x for x, _ in challenger), max(x for x, _ in incumbent))
    if lo > hi:
        return {"overlap": None, "overtakes": [], "falls_behind": [], "summary": "no overlap"}
    xs = sorted({x for x, _ in (*challenger, *incumbent) if lo <= x <= hi})
    diffs = [interpolate(challenger, x) - interpolate(incumbent, x) for x in xs]
    overtakes: list[float] = []
    behind: list[float] = []
    prev_sign, prev_x, prev_d, tie_start = 0, xs[0], diffs[0], None
    for x, d in zip(xs, diffs):
        sign = (d > 1e-9) - (d < -1e-9)
        if sign == 0:
            tie_start = x if tie_start is None else tie_start
            continue
        if prev_sign and sign != prev_sign:
            where = tie_start if tie_start is not None else _root(prev_x, prev_d, x, d)
            (overtakes if sign > 0 else behind).append(round(where, 4))
        prev_sign, prev_x, prev_d, tie_start = sign, x, d, None
    if overtakes:
        summary = "overtakes at x=" + ", ".join(f"{x:g}" for x in overtakes)
    elif prev_sign == 0:
        summary = "none in range (tied throughout)"
    elif behind:
        summary = "none in range (falls behind at x=" + ", ".join(f"{x:g}" for x in behind) + ")"
    elif prev_sign > 0:
        summary = "none in range (never behind)"
    else:
        summary = "none in range (never ahead)"
    return {"overlap": [lo, hi], "overtakes": overtakes, "falls_behind": behind, "summary": summary}


def _root(x0: float, d0: float, x1: float, d1: float) -> float:
    """Where the difference, linear in log x between two points, is zero."""
    t = d0 / (d0 - d1)
    return math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
