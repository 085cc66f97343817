"""Drift: reference bins of a training window, and the population stability index (PSI) of a live window against them.

    PSI = sum over bins of (live share - reference share) * ln(live share / reference share)

Bins are the reference's deciles (quantile edges, so each holds ~10% of the training window; ties merged), open at
both ends so live values outside the training range land in the first or last bin. Shares are floored at
`SHARE_FLOOR` before the logarithm, so an empty bin costs a large but finite amount.

The usual reading (Siddiqi, "Credit risk scorecards"): under 0.1 stable, 0.1 to 0.25 moderate, 0.25 and over a
significant shift. PSI has a positive bias on finite samples: with B bins, two samples of n and N drawn from the
*same* distribution give about (B - 1) * (1/n + 1/N) on average (it is a chi-square statistic in disguise). Under
`MIN_LIVE` live values no verdict is given; the band is read from the PSI less the level the training series' own
windows of the same length reach (see `null_quantiles`), so a verdict does not flip with the size of the window.
Pure: numpy only.
"""
from __future__ import annotations

import math

import numpy as np

BINS = 10
SHARE_FLOOR = 1e-4
MIN_LIVE = 100  # no drift verdict under this many live values
MIN_EFFECTIVE = 3.0  # nor under this many effectively independent ones (see effective_size)
NULL_LENGTHS = (100, 200, 400, 800, 1380, 2760)
NULL_WINDOWS = 40
MODERATE, SIGNIFICANT = 0.1, 0.25


def reference_bins(values, *, bins: int = BINS) -> dict:
    """{"edges": inner edges (ascending, unique), "shares": share of the values per bin, "n": count, "tau": the
    series' integrated autocorrelation time} of the finite values, given in time order; edges are empty (one bin)
    when the values are constant or there are none."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return {"edges": [], "shares": [1.0], "n": 0, "tau": 1.0}
    inner = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(inner, x, side="right"), minlength=len(inner) + 1)
    reference = {"edges": [float(e) for e in inner], "shares": (counts / len(x)).tolist(), "n": int(len(x)),
                 "tau": round(autocorrelation_time(x), 3)}
    reference["null"] = null_quantiles(x, reference)
    return reference


def null_quantiles(x: np.ndarray, reference: dict) -> list[list[float]]:
    """[[window length, median PSI, 95th percentile PSI], ...]: the PSI that windows of the training series itself
    reach against its whole, for a few window lengths (NULL_WINDOWS windows each, evenly spaced).

    This is the yardstick a live window is read against: it carries everything that moves a feature without any
    change of market (its autocorrelation, volatility clustering, the time-of-day cycle of a window of hours), at
    the live window's own length, so a verdict does not flip with the window's size."""
    out = []
    for length in NULL_LENGTHS:
        if length * 3 > len(x):
            break
        starts = np.linspace(0, len(x) - length, NULL_WINDOWS).astype(np.int64)
        values = [psi(reference["shares"], shares_of(x[start:start + length], reference)[0]) for start in starts]
        out.append([length, float(np.median(values)), float(np.quantile(values, 0.95))])
    return out


def null_level(reference: dict, n: int) -> float | None:
    """The 95th percentile of the training series' own PSI at window length n (interpolated on log length; under
    the shortest length measured, scaled up as 1/n; over the longest, the longest's); None without the figures."""
    table = reference.get("null") or []
    if not table or n <= 0:
        return None
    lengths = np.log([row[0] for row in table])
    levels = [row[2] for row in table]
    if n <= table[0][0]:
        return levels[0] * table[0][0] / n
    if n >= table[-1][0]:
        return levels[-1]
    return float(np.interp(np.log(n), lengths, levels))


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


def autocorrelation_time(values, *, max_lag: int = 300) -> float:
    """tau = 1 + 2 * (rho_1 + rho_2 + ...), summed up to the first lag where the autocorrelation falls under 0.05
    (Sokal's windowing): a series is worth n / tau independent values. A feature over a 14-bar window has tau near
    14, one over 60 bars near 60."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 3 or np.ptp(x) == 0:
        return 1.0
    centred = x - x.mean()
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spectrum = np.fft.rfft(centred, size)
    acf = np.fft.irfft(spectrum * np.conj(spectrum), size)[: min(n, max_lag + 1)]
    acf = acf / acf[0]
    below = np.flatnonzero(acf[1:] < 0.05)
    cut = int(below[0]) if len(below) else len(acf) - 1
    return max(1.0, 1.0 + 2.0 * float(acf[1:cut + 1].sum()))


def effective_size(values, *, tau: float | None = None) -> float:
    """How many independent values a series is worth: n / tau. Give the reference's tau: measured on a live window
    that drifted, the autocorrelation mostly measures the drift itself (the level shift), and would hide it."""
    x = np.asarray(values, dtype=np.float64).ravel()
    n = int(np.isfinite(x).sum())
    return float(n / (tau if tau and tau >= 1.0 else autocorrelation_time(x)))


def psi_report(values, reference: dict, *, min_live: int = MIN_LIVE, min_effective: float = MIN_EFFECTIVE) -> dict:
    """PSI of `values` (in time order) against `reference`, with the live count and effective size, the level
    sampling alone reaches (`psi_noise`), and the figure the band is read from: `excess` = max(0, psi - noise).

    The noise level is, when the reference has them, the 95th percentile of the PSI of the training series' own
    windows of the live window's length (`null_quantiles`); else the chi-square mean (bins - 1) (1 / n_eff +
    1 / N) with n_eff from the reference's autocorrelation time. A slow feature (a 60-bar return) barely moves
    within a few hundred bars, and volatility follows the clock, so a short live window's raw PSI is large by chance
    alone: judged raw, a calm market reads as drift. Under `min_live` values (or `min_effective` effective ones)
    there is no verdict ("insufficient")."""
    shares, n = shares_of(values, reference)
    bins = len(reference["shares"])
    n_eff = effective_size(values, tau=reference.get("tau")) if n else 0.0
    noise = null_level(reference, n)
    if noise is None and n_eff > 0:
        reference_n = max(reference.get("n") or 1, 1) / max(reference.get("tau") or 1.0, 1.0)
        noise = (bins - 1) * (1.0 / n_eff + 1.0 / reference_n)
    out = {"n": n, "n_effective": round(n_eff, 1), "min_n": min_live, "psi_noise": noise,
           "live_shares": shares.tolist(), "reference_shares": list(reference["shares"])}
    if n < min_live or n_eff < min_effective:
        return {**out, "psi": None, "excess": None, "band": "insufficient"}
    value = psi(reference["shares"], shares)
    excess = max(0.0, value - (noise or 0.0))
    return {**out, "psi": value, "excess": excess, "band": band(excess)}
