"""Learning-curve extrapolation (Domhan, Springenberg & Hutter, IJCAI 2015): stop a child
whose partial validation curve makes it unlikely to beat the best child so far.

The model is the paper's: a learning curve ``y(x)`` (validation accuracy after epoch
``x = 1, 2, ...``) is one of a set of increasing parametric families plus Gaussian noise,
and the curves are extrapolated to the last epoch ``m`` of the child's budget. The
families are the paper's eleven (its Table 1; ``x`` counts epochs from 1):

=================  =========================================  ======================
name               f(x)                                       constraints (increasing)
=================  =========================================  ======================
vapor_pressure     exp(a + b / x + c ln x)                    b <= 0, c >= 0
pow3               c - a x^(-alpha)                           a, alpha >= 0, c <= 1
log_log_linear     ln(a ln x + b)                             a >= 0, b > 0
hill3              ymax x^eta / (kappa^eta + x^eta)           eta, kappa > 0, ymax <= 1
log_power          a / (1 + (x / e^b)^c)                      c <= 0, 0 <= a <= 1
pow4               c - (a x + b)^(-alpha)                     a > 0, b, alpha >= 0, c <= 1
mmf                alpha - delta / (1 + (kappa x)^d)          delta, kappa, d >= 0
exp4               c - exp(-a x^alpha + b)                    a, alpha >= 0, c <= 1
janoschek          alpha - delta exp(-kappa x^d)              delta, kappa, d >= 0
weibull            alpha - delta exp(-(kappa x)^d)            delta, kappa, d >= 0
ilog2              c - a / ln(x + 1)                          a >= 0, c <= 1
=================  =========================================  ======================

(MMF, Janoschek and Weibull are written with ``delta = alpha - beta`` so that the paper's
``alpha >= beta`` is a box bound; ilog2 uses ``ln(x + 1)`` where the paper's ``ln x`` is
infinite at the first epoch; the asymptote ``<= 1`` bounds are the paper's prior that an
accuracy cannot exceed 1.)

**How it is fitted, and why not by MCMC.** The paper samples the joint posterior of all
families' parameters and the ensemble weights with MCMC (emcee, thousands of samples per
prediction). Here a prediction is made after every epoch of every child of a search on a
shared 2-core CPU, with 3-30 points per curve, so a cheaper approximation of the same
posterior predictive is used:

1. each family is fitted by bounded nonlinear least squares (``scipy.optimize.least_squares``,
   trust-region reflective, tolerances 1e-6, at most 100 evaluations from each of 1-3
   deterministic starting points derived from the curve; no random draw) wherever the
   curve has more points than the family has parameters;
2. its predictive distribution at ``m`` is Gaussian (Laplace / delta method): mean
   ``f(m; theta_hat)``, variance ``sigma^2 (1 + g^T (J^T J)^+ g)`` with ``J`` the Jacobian of
   the residuals at the fit, ``g = df(m)/dtheta`` and ``sigma^2`` the residual variance
   (at least ``noise_floor^2``: a near-exact fit of a few points is not certain);
3. the families are averaged with BIC weights, ``w_k ~ exp(-BIC_k / 2)``, ``BIC_k = n
   ln(sigma_k^2) + p_k ln n`` (the large-sample approximation of each family's marginal
   likelihood; the paper instead samples a weighted sum of the families);
4. fits whose prediction at ``m`` is not a number in [0, 1] are dropped (the paper's prior
   gives them zero probability).

``P(y(m) > best) = sum_k w_k (1 - Phi((best - mu_k) / s_k))``, which is non-increasing in
``best``. One prediction of all eleven families takes about 0.5 s of CPU on this project's
shared 2-core machine (:func:`fit_curve` then :meth:`CurveFit.prob_above`; a few ms per
family on an idle core), against minutes for the paper's sampler: the trade is that the
Gaussian approximation understates the heavy tails of a posterior far from its data,
which the noise floor and the conservative default threshold (0.05, the paper's) offset.

:class:`CurveStopper` is the decision rule, with the config options of ``config.early_stop``
(:func:`stopper_from_config`): after each epoch of a child, with at least ``min_points``
points and a best-so-far, stop the child when ``P < threshold``. It holds no state.

Bad input raises :class:`CurveError` (a ``ValueError``) naming the problem: a NaN or
infinite value, too few points, values outside [0, 1], epochs that do not increase, a
target epoch before the last observed one, an unknown family.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize, special

from jnas.errors import JnasError


class CurveError(ValueError, JnasError):
    """A learning curve (or a request about it) that cannot be extrapolated; the message
    names the problem."""


@dataclasses.dataclass(frozen=True)
class Family:
    """One parametric family: ``fn(x, theta)``, bounds, and starting points from a curve."""

    name: str
    fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    starts: Callable[[np.ndarray, np.ndarray], list[list[float]]]

    @property
    def num_params(self) -> int:
        return len(self.lower)


_INF = np.inf


def _top(y):  # a guess of the asymptote, a little above the last values
    return float(min(1.0, max(y[-3:].max() + 0.02, 1e-3)))


def _gap(y):  # how far the first point lies below the asymptote guess
    return float(max(_top(y) - y[0], 1e-3))


def _vapor_pressure(x, t):
    a, b, c = t
    return np.exp(a + b / x + c * np.log(x))


def _pow3(x, t):
    c, a, alpha = t
    return c - a * x ** (-alpha)


def _log_log_linear(x, t):
    a, b = t
    return np.log(a * np.log(x) + b)


def _hill3(x, t):
    ymax, eta, kappa = t
    return ymax * x**eta / (kappa**eta + x**eta)


def _log_power(x, t):
    a, b, c = t
    return a / (1.0 + (x / np.exp(b)) ** c)


def _pow4(x, t):
    c, a, b, alpha = t
    return c - (a * x + b) ** (-alpha)


def _mmf(x, t):
    alpha, delta, kappa, d = t
    return alpha - delta / (1.0 + (kappa * x) ** d)


def _exp4(x, t):
    c, a, b, alpha = t
    return c - np.exp(-a * x**alpha + b)


def _janoschek(x, t):
    alpha, delta, kappa, d = t
    return alpha - delta * np.exp(-kappa * x**d)


def _weibull(x, t):
    alpha, delta, kappa, d = t
    return alpha - delta * np.exp(-((kappa * x) ** d))


def _ilog2(x, t):
    c, a = t
    return c - a / np.log(x + 1.0)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "vapor_pressure",
            _vapor_pressure,
            (-_INF, -_INF, 0.0),
            (_INF, 0.0, _INF),
            lambda x, y: [[math.log(_top(y)), -0.5, 0.0], [math.log(_top(y)), -2.0, 0.01]],
        ),
        Family(
            "pow3",
            _pow3,
            (-_INF, 0.0, 0.0),
            (1.0, _INF, _INF),
            lambda x, y: [[_top(y), _gap(y), a] for a in (0.5, 1.0, 2.0)],
        ),
        Family(
            "log_log_linear",
            _log_log_linear,
            (0.0, 1e-9),
            (_INF, _INF),
            lambda x, y: [[0.5, math.exp(max(y[0], 1e-3))], [0.1, math.exp(max(y[0], 1e-3))]],
        ),
        Family(
            "hill3",
            _hill3,
            (0.0, 0.0, 1e-9),
            (1.0, _INF, _INF),
            lambda x, y: [[_top(y), eta, 1.0] for eta in (0.5, 1.0, 2.0)],
        ),
        Family(
            "log_power",
            _log_power,
            (0.0, -_INF, -_INF),
            (1.0, _INF, 0.0),
            lambda x, y: [[_top(y), 0.0, c] for c in (-0.5, -1.0, -2.0)],
        ),
        Family(
            "pow4",
            _pow4,
            (-_INF, 1e-9, 0.0, 0.0),
            (1.0, _INF, _INF, _INF),
            lambda x, y: [[_top(y), 1.0, 1.0 / _gap(y), 1.0], [_top(y), 0.5, 1.0, 0.5]],
        ),
        Family(
            "mmf",
            _mmf,
            (-_INF, 0.0, 0.0, 0.0),
            (1.0, _INF, _INF, _INF),
            lambda x, y: [[_top(y), 2 * _gap(y), 1.0, d] for d in (0.5, 1.0, 2.0)],
        ),
        Family(
            "exp4",
            _exp4,
            (-_INF, 0.0, -_INF, 0.0),
            (1.0, _INF, _INF, _INF),
            lambda x, y: [[_top(y), a, math.log(_gap(y)) + a, 1.0] for a in (0.1, 0.5, 1.0)],
        ),
        Family(
            "janoschek",
            _janoschek,
            (-_INF, 0.0, 0.0, 0.0),
            (1.0, _INF, _INF, _INF),
            lambda x, y: [[_top(y), _gap(y) * math.e**k, k, 1.0] for k in (0.1, 0.5, 1.0)],
        ),
        Family(
            "weibull",
            _weibull,
            (-_INF, 0.0, 0.0, 0.0),
            (1.0, _INF, _INF, _INF),
            lambda x, y: [[_top(y), _gap(y) * math.e**k, k, 1.0] for k in (0.1, 0.5, 1.0)],
        ),
        Family(
            "ilog2",
            _ilog2,
            (-_INF, 0.0),
            (1.0, _INF),
            lambda x, y: [[_top(y), _gap(y) * math.log(2.0)]],
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class FamilyFit:
    """One family's least-squares fit: parameters, residual variance, BIC."""

    family: Family
    params: np.ndarray
    sigma2: float  # residual variance (with the noise floor)
    bic: float
    cov: np.ndarray  # (J^T J)^+ at the fit, in parameter units (times sigma2: covariance)

    def mean(self, x) -> np.ndarray:
        with np.errstate(all="ignore"):
            return self.family.fn(np.asarray(x, np.float64), self.params)

    def predict(self, x_target: float) -> tuple[float, float]:
        """``(mean, std)`` of the Gaussian predictive at epoch ``x_target``."""
        mu = float(self.mean(np.asarray([x_target]))[0])
        g = _jacobian(self.family.fn, np.asarray([x_target], np.float64), self.params)[0]
        with np.errstate(all="ignore"):  # a degenerate fit: NaN or inf, handled below
            var = self.sigma2 * (1.0 + float(g @ self.cov @ g))
        return mu, math.sqrt(max(var, self.sigma2)) if math.isfinite(var) else math.inf


@dataclasses.dataclass(frozen=True)
class CurveFit:
    """The ensemble of family fits of one curve (from :func:`fit_curve`)."""

    x: np.ndarray
    y: np.ndarray
    fits: tuple[FamilyFit, ...]

    def predict(self, x_target: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(means, stds, weights)`` over the families that give a prediction in [0, 1] at
        ``x_target``; weights are the BIC weights renormalised over those families.

        Raises:
          CurveError: ``x_target`` before the last observed epoch, or no family predicts a
            value in [0, 1] there.
        """
        x_target = float(x_target)
        if not math.isfinite(x_target) or x_target < self.x[-1]:
            raise CurveError(
                f"the target epoch {x_target} is before the last observed epoch {self.x[-1]:g}"
            )
        means, stds, bics = [], [], []
        for fit in self.fits:
            mu, sd = fit.predict(x_target)
            if math.isfinite(mu) and 0.0 <= mu <= 1.0 and not math.isnan(sd):
                means.append(mu)
                stds.append(sd)
                bics.append(fit.bic)
        if not means:
            raise CurveError(
                f"no curve family predicts an accuracy in [0, 1] at epoch {x_target:g} "
                f"from the curve {np.round(self.y, 4).tolist()}"
            )
        bics = np.asarray(bics)
        w = np.exp(-0.5 * (bics - bics.min()))
        return np.asarray(means), np.asarray(stds), w / w.sum()

    def mean(self, x_target: float) -> float:
        """The ensemble's predicted mean accuracy at ``x_target``."""
        means, _, w = self.predict(x_target)
        return float(w @ means)

    def prob_above(self, best: float, x_target: float) -> float:
        """``P(y(x_target) > best)`` under the ensemble (non-increasing in ``best``)."""
        best = float(best)
        if math.isnan(best):
            raise CurveError("the best-so-far accuracy is NaN")
        means, stds, w = self.predict(x_target)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(stds > 0, (best - means) / stds, np.where(best < means, -np.inf, np.inf))
        return float(np.clip(w @ special.ndtr(-z), 0.0, 1.0))


def check_curve(y, x=None, *, min_points: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as float64 arrays, or :class:`CurveError` naming what is wrong.

    ``y`` are accuracies in [0, 1]; ``x`` the epochs they were measured after (default
    ``1, 2, ..., len(y)``), strictly increasing and positive.
    """
    try:
        y = np.asarray(y, np.float64)
    except (TypeError, ValueError):
        raise CurveError(f"a learning curve must be a sequence of numbers, got {y!r}") from None
    if y.ndim != 1:
        raise CurveError(f"a learning curve must be one-dimensional, got shape {y.shape}")
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size:
        raise CurveError(
            f"the learning curve has a non-finite value {y[bad[0]]} at point {bad[0]} "
            "(did the child diverge?)"
        )
    if y.size < min_points:
        raise CurveError(
            f"the learning curve has {y.size} point(s); extrapolation needs at least {min_points}"
        )
    if y.size and (y.min() < 0.0 or y.max() > 1.0):
        raise CurveError(f"learning-curve values must be accuracies in [0, 1], got {y.tolist()}")
    x = np.arange(1.0, y.size + 1.0) if x is None else np.asarray(x, np.float64)
    if x.shape != y.shape:
        raise CurveError(f"{x.size} epochs for {y.size} curve points")
    if x.size and (not np.all(np.isfinite(x)) or x[0] <= 0 or np.any(np.diff(x) <= 0)):
        raise CurveError(f"curve epochs must be positive and increasing, got {x.tolist()}")
    return x, y


def _jacobian(fn, x, theta) -> np.ndarray:
    """d fn(x, theta) / d theta by central differences, ``[len(x), len(theta)]``."""
    theta = np.asarray(theta, np.float64)
    out = np.empty((x.size, theta.size))
    with np.errstate(all="ignore"):
        for i in range(theta.size):
            h = 1e-6 * max(1.0, abs(theta[i]))
            up, down = theta.copy(), theta.copy()
            up[i] += h
            down[i] -= h
            out[:, i] = (fn(x, up) - fn(x, down)) / (2 * h)
    return out


def _fit_family(family: Family, x, y, noise_floor: float) -> FamilyFit | None:
    lower, upper = np.asarray(family.lower), np.asarray(family.upper)
    best = None

    def residuals(theta):
        with np.errstate(all="ignore"):
            r = family.fn(x, theta) - y
        return np.where(np.isfinite(r), r, 1e3)

    for start in family.starts(x, y):
        x0 = np.clip(np.asarray(start, np.float64), lower + 1e-9, upper - 1e-9)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = optimize.least_squares(
                    residuals,
                    x0,
                    bounds=(lower, upper),
                    method="trf",
                    max_nfev=100,
                    ftol=1e-6,
                    xtol=1e-6,
                    gtol=1e-6,
                )
        except (ValueError, np.linalg.LinAlgError):
            continue
        if np.all(np.isfinite(res.x)) and (best is None or res.cost < best.cost):
            best = res
    if best is None:
        return None
    with np.errstate(all="ignore"):
        fitted = family.fn(x, best.x)
    if not np.all(np.isfinite(fitted)):
        return None
    n, p = y.size, family.num_params
    rss = float(np.sum((fitted - y) ** 2))
    sigma2 = max(rss / (n - p), noise_floor**2)
    bic = n * math.log(max(rss / n, noise_floor**2)) + p * math.log(n)
    jac = _jacobian(family.fn, x, best.x)
    if not np.all(np.isfinite(jac)):
        return None
    cov = np.linalg.pinv(jac.T @ jac, rcond=1e-10)
    return FamilyFit(family, best.x, sigma2, bic, cov)


DEFAULT_FAMILIES: tuple[str, ...] = tuple(FAMILIES)


def fit_curve(
    y,
    x=None,
    *,
    families: Sequence[str] = DEFAULT_FAMILIES,
    noise_floor: float = 0.005,
    min_points: int = 3,
) -> CurveFit:
    """Fits every family that has fewer parameters than the curve has points.

    Args:
      y: validation accuracies in [0, 1], one per epoch.
      x: the epochs they were measured after (default ``1..len(y)``).
      families: names from :data:`FAMILIES` (default: all eleven).
      noise_floor: the smallest noise standard deviation assumed (accuracy units).
      min_points: fewer points than this is an error.

    Raises:
      CurveError: bad input (see :func:`check_curve`), an unknown family, or no family fits.
    """
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown or not families:
        raise CurveError(f"unknown curve families {unknown}; known: {sorted(FAMILIES)}")
    if not noise_floor > 0:
        raise CurveError(f"noise_floor must be > 0, got {noise_floor}")
    x, y = check_curve(y, x, min_points=max(int(min_points), 2))
    fits = []
    for name in families:
        family = FAMILIES[name]
        if y.size > family.num_params:
            fit = _fit_family(family, x, y, noise_floor)
            if fit is not None:
                fits.append(fit)
    if not fits:
        raise CurveError(
            f"no curve family could be fitted to {y.size} points (each needs more points "
            f"than parameters): {np.round(y, 4).tolist()}"
        )
    return CurveFit(x, y, tuple(fits))


def prob_improvement(y, best: float, final_epoch: float, x=None, **fit_options) -> float:
    """``P(accuracy after final_epoch > best)`` given the partial curve ``y`` (see the module
    docstring); ``fit_options`` go to :func:`fit_curve`."""
    return fit_curve(y, x, **fit_options).prob_above(best, final_epoch)


@dataclasses.dataclass(frozen=True)
class CurveStopper:
    """The stop rule of Domhan et al.: stop a child when ``P(final > best so far) < threshold``.

    Attributes:
      threshold: the probability below which a child is stopped (the paper: 0.05).
      min_points: epochs observed before the first decision.
      families: the curve families of the ensemble.
      noise_floor: the smallest noise standard deviation (see :func:`fit_curve`).
    """

    threshold: float = 0.05
    min_points: int = 3
    families: tuple[str, ...] = DEFAULT_FAMILIES
    noise_floor: float = 0.005

    def __post_init__(self):
        if not 0.0 <= float(self.threshold) < 1.0:
            raise CurveError(f"early_stop.threshold must be in [0, 1), got {self.threshold}")
        if int(self.min_points) < 2:
            raise CurveError(f"early_stop.min_points must be >= 2, got {self.min_points}")
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise CurveError(f"unknown curve families {unknown}; known: {sorted(FAMILIES)}")
        if not float(self.noise_floor) > 0:
            raise CurveError(f"early_stop.noise_floor must be > 0, got {self.noise_floor}")

    def probability(self, curve, best: float, final_epoch: float) -> float | None:
        """``P(final > best)``, or None where no decision is made yet (too few points, no
        best so far, the curve already at its final epoch, or no family fits)."""
        x, y = check_curve(curve)  # NaN and out-of-range values are errors, always
        if best is None or y.size < self.min_points or y.size >= final_epoch:
            return None
        try:
            fit = fit_curve(
                y, x, families=self.families, noise_floor=self.noise_floor, min_points=2
            )
            return fit.prob_above(best, final_epoch)
        except CurveError:
            return None  # nothing fits (yet): keep training

    def should_stop(self, curve, best: float | None, final_epoch: float) -> bool:
        """Whether to stop the child after the epochs of ``curve`` (see :meth:`probability`)."""
        p = self.probability(curve, best, final_epoch)
        return p is not None and p < self.threshold


def stopper_from_config(section) -> CurveStopper | None:
    """A :class:`CurveStopper` from ``config.early_stop`` (``enabled``, ``threshold``,
    ``min_points``, ``families``, ``noise_floor``), or None when it is absent or disabled.

    Raises:
      CurveError: an unknown option or a value out of range (named).
    """
    if section is None:
        return None
    options = dict(section.items())
    if not options.pop("enabled", True):
        return None
    names = {f.name for f in dataclasses.fields(CurveStopper)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise CurveError(f"unknown early_stop option(s) {unknown}; known: enabled, {sorted(names)}")
    if "families" in options:
        options["families"] = tuple(options["families"])
    return CurveStopper(**options)
