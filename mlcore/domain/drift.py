"""Drift: reference bins of a training window, and the population stability index (PSI) of a live window against them.

    PSI = sum over bins of (live share - reference share) * ln(live share / reference share)

Bins are the reference's deciles (quantile edges, so each holds ~10% of the training window; ties merged), open at
both ends so live values outside the training range land in the first or last bin. Shares are floored at
`SHARE_FLOOR` before the logarithm, so an empty bin costs a large but finite amount.

The usual reading (Siddiqi, "Credit risk scorecards"): under 0.1 stable, 0.1 to 0.25 moderate, 0.25 and over a
significant shift. PSI has a positive bias on finite samples: with B bins, two samples of n and N drawn from the
*same* distribution give about (B - 1) * (1/n + 1/N) on average (it is a chi-square statistic in disguise). Under
`MIN_LIVE` live values no verdict is given, and `psi_noise` is reported beside each figure so a reader can see
how much of it sampling alone explains. Pure: numpy only.
"""
from __future__ import annotations

import math

import numpy as np

BINS = 10
SHARE_FLOOR = 1e-4
MIN_LIVE = 100  # no drift verdict under this many live values
MODERATE, SIGNIFICANT = 0.1, 0.25


def reference_bins(values, *, bins: int = BINS) -> dict:
    """{"edges": inner edges (ascending, unique), "shares": share of the values per bin, "n": count} of the finite
    values; edges are empty (one bin) when the values are constant or there are none."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"edges": [], "shares": [1.0], "n": 0}
    inner = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(inner, x, side="right"), minlength=len(inner) + 1)
    return {"edges": [float(e) for e in inner], "shares": (counts / len(x)).tolist(), "n": int(len(x))}


def shares_of(values, reference: dict) -> tuple[np.ndarray, int]:
    """The live values' share per reference bin, and how many finite values there were."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    edges = np.asarray(reference["edges"], dtype=np.float64)
    if len(x) == 0:
        return np.zeros(len(edges) + 1), 0
    counts = np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
    return counts / len(x), int(len(x))


def psi(reference_shares, live_shares) -> float:
    ref = np.maximum(np.asarray(reference_shares, dtype=np.float64), SHARE_FLOOR)
    live = np.maximum(np.asarray(live_shares, dtype=np.float64), SHARE_FLOOR)
    if ref.shape != live.shape:
        raise ValueError(f"{len(ref)} reference bins against {len(live)} live bins")
    return float(np.sum((live - ref) * np.log(live / ref)))


def band(value: float | None) -> str:
    """"stable", "moderate" or "significant" by the 0.1 / 0.25 convention; "unknown" for None or NaN."""
    if value is None or not math.isfinite(value):
        return "unknown"
    return "significant" if value >= SIGNIFICANT else "moderate" if value >= MODERATE else "stable"


def psi_report(values, reference: dict, *, min_live: int = MIN_LIVE) -> dict:
    """PSI of `values` against `reference`, with its band, the live count, the sampling noise level and, under
    `min_live` values, no verdict (psi None, band "insufficient")."""
    shares, n = shares_of(values, reference)
    bins = len(reference["shares"])
    noise = (bins - 1) * (1.0 / n + 1.0 / max(reference.get("n") or 1, 1)) if n else None
    if n < min_live:
        return {"psi": None, "band": "insufficient", "n": n, "min_n": min_live, "psi_noise": noise,
                "live_shares": shares.tolist(), "reference_shares": list(reference["shares"])}
    value = psi(reference["shares"], shares)
    return {"psi": value, "band": band(value), "n": n, "min_n": min_live, "psi_noise": noise,
            "live_shares": shares.tolist(), "reference_shares": list(reference["shares"])}
