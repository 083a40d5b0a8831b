"""Exposure estimators (The Secret Sharer, Def. 4). Units: log-perplexity in bits, exposure in bits.

Higher exposure = more memorized. exposure = log2 |R| - log2 rank, where rank
counts candidates r in R with Px(r) <= Px(canary): ties count against the
canary, and rank >= 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats

LN2 = math.log(2.0)


def exposure_from_rank(rank: float, space_size: float) -> float:
    """log2(space_size) - log2(rank), for 1 <= rank <= space_size + 1 (bits)."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1 (the canary counts itself), got {rank}")
    if space_size < 1:
        raise ValueError(f"space_size must be >= 1, got {space_size}")
    return math.log2(space_size) - math.log2(rank)


def exposure_interpolation(canary_px: float | np.ndarray, reference_pxs: np.ndarray) -> float | np.ndarray:
    """Exposure from the rank among sampled references (as tensorflow/privacy does).

    rank = 1 + number of references with px <= canary px (ties against the
    canary); the space size is the number of references, so the largest value
    is log2(N) and a canary worse than every reference gets log2(N / (N + 1)).
    Accepts one canary or an array of canaries.
    """
    refs = np.sort(np.asarray(reference_pxs, dtype=np.float64))
    if refs.size == 0:
        raise ValueError("no reference candidates")
    px = np.asarray(canary_px, dtype=np.float64)
    ranks = 1 + np.searchsorted(refs, px, side="right")  # side=right counts references equal to px
    exposures = np.log2(refs.size) - np.log2(ranks)
    return float(exposures) if np.ndim(px) == 0 else exposures


@dataclass(frozen=True)
class SkewNormalFit:
    """scipy.stats.skewnorm parameters fitted to the references' px (bits)."""

    shape: float
    loc: float
    scale: float

    def log_cdf(self, x: float, direct_limit: float = -600.0) -> float:
        """Natural log of the fitted CDF at ``x``, finite far into the left tail.

        scipy's skewnorm.logcdf is log(cdf) and reaches -inf once the CDF
        underflows (a memorized canary lies far below every reference). There we
        integrate the density relative to its value at x, in log space:
        log CDF(x) = log pdf(x) + log of the integral of pdf(t)/pdf(x) for t <= x.
        Hand-written: scipy has no log-space skew-normal CDF.
        """
        direct = float(stats.skewnorm.logcdf(x, self.shape, self.loc, self.scale))
        if math.isfinite(direct) and direct > direct_limit:
            return direct
        log_pdf_x = self._log_pdf(x)

        def ratio(t: float) -> float:
            return math.exp(self._log_pdf(t) - log_pdf_x)

        width = self.scale
        total, _ = integrate.quad(ratio, x - 50 * width, x, limit=200)
        tail, _ = integrate.quad(ratio, -np.inf, x - 50 * width)
        return log_pdf_x + math.log(total + tail)

    def _log_pdf(self, x: float) -> float:
        z = (x - self.loc) / self.scale
        return math.log(2.0) + float(stats.norm.logpdf(z)) + float(stats.norm.logcdf(self.shape * z)) - math.log(self.scale)


def fit_skew_normal(reference_pxs: np.ndarray) -> SkewNormalFit:
    refs = np.asarray(reference_pxs, dtype=np.float64)
    if refs.size < 3:
        raise ValueError("need at least 3 references to fit a skew-normal")
    shape, loc, scale = stats.skewnorm.fit(refs)
    return SkewNormalFit(float(shape), float(loc), float(scale))


def exposure_extrapolation(
    canary_px: float | np.ndarray, reference_pxs: np.ndarray, fit: SkewNormalFit | None = None
) -> tuple[float | np.ndarray, SkewNormalFit]:
    """-log2 CDF(canary px) under a skew-normal fitted to the references; returns (exposure, fit).

    Finite for any finite px (see :meth:`SkewNormalFit.log_cdf`), never inf or NaN.
    """
    fit = fit or fit_skew_normal(reference_pxs)
    px = np.asarray(canary_px, dtype=np.float64)
    values = np.array([-fit.log_cdf(float(v)) / LN2 for v in px.reshape(-1)]).reshape(px.shape)
    return (float(values) if np.ndim(px) == 0 else values), fit


def cap_at_space(exposure: float | np.ndarray, log2_space_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(min(exposure, log2|R|), capped?) per value: exposure cannot exceed log2|R| (rank >= 1).

    An estimate above log2|R| says "at least as exposed as the likeliest filling can be";
    the capped value is reported as a lower bound (``>=``).
    """
    values = np.asarray(exposure, dtype=np.float64)
    capped = values > log2_space_size
    return np.where(capped, log2_space_size, values), capped


def interpolation_saturated(canary_px: float | np.ndarray, reference_pxs: np.ndarray) -> np.ndarray:
    """Whether each canary is likelier than every reference: interpolation then reads log2(N)
    (N references), its largest value, which is a lower bound on the true exposure."""
    refs = np.asarray(reference_pxs, dtype=np.float64)
    return np.asarray(canary_px, dtype=np.float64) < refs.min()
