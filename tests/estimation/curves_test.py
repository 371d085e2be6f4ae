"""Learning-curve extrapolation (jnas.estimation.curves, Domhan et al. 2015): parameter
recovery on a curve drawn from one family, the probability's monotonicity, the stop rule,
and the named errors of bad curves."""

import jax
import numpy as np
import pytest

from jnas.estimation import curves


def _noisy(family, params, n, sigma, seed):
    x = np.arange(1.0, n + 1.0)
    clean = curves.FAMILIES[family].fn(x, np.asarray(params, np.float64))
    noise = np.asarray(jax.random.normal(jax.random.key(seed), (n,)), np.float64)
    return x, clean, clean + sigma * noise


@pytest.mark.parametrize(
    "family, params",
    [
        ("pow3", (0.9, 0.5, 0.8)),  # c - a x^-alpha
        ("weibull", (0.92, 0.6, 0.3, 1.2)),  # alpha - delta exp(-(kappa x)^d)
        ("ilog2", (0.95, 0.4)),  # c - a / ln(x + 1)
    ],
)
def test_a_fit_recovers_the_parameters_of_a_curve_of_its_family(family, params):
    x, clean, y = _noisy(family, params, 30, 0.002, seed=0)
    fit = curves.fit_curve(y, families=(family,))
    (one,) = fit.fits
    np.testing.assert_allclose(one.params, params, rtol=0.1, atol=0.02)
    assert one.mean(x) == pytest.approx(clean, abs=0.005)
    # The noise estimate is the noise drawn (0.002), raised to the floor (0.005).
    assert one.sigma2 == pytest.approx(0.005**2)


def test_the_ensemble_extrapolates_a_pow3_curve_from_its_first_third():
    x, clean, y = _noisy("pow3", (0.9, 0.5, 0.8), 30, 0.002, seed=1)
    fit = curves.fit_curve(y[:10])
    means, stds, weights = fit.predict(30)
    assert weights.sum() == pytest.approx(1.0) and np.all(weights >= 0)
    assert np.all((0 <= means) & (means <= 1))
    assert fit.mean(30) == pytest.approx(clean[-1], abs=0.015)
    # The true final accuracy lies inside the ensemble's central 99 %.
    assert 0.005 < fit.prob_above(clean[-1], 30) < 0.995


def test_the_probability_is_monotone_in_the_best_so_far():
    _, _, y = _noisy("pow3", (0.85, 0.4, 0.7), 8, 0.003, seed=2)
    fit = curves.fit_curve(y)
    bests = np.linspace(0.0, 1.0, 41)
    probs = np.array([fit.prob_above(b, 20) for b in bests])
    assert np.all(np.diff(probs) <= 1e-12)
    assert probs[0] == pytest.approx(1.0) and probs[-1] < 1e-3
    assert curves.prob_improvement(y, 0.5, 20) == pytest.approx(fit.prob_above(0.5, 20))


def test_the_stopper_stops_a_flat_curve_below_the_best_and_keeps_a_rising_one():
    stopper = curves.CurveStopper(threshold=0.05, min_points=3)
    flat = [0.40, 0.41, 0.41, 0.42]  # saturating far below the best so far
    rising = curves.FAMILIES["pow3"].fn(np.arange(1.0, 5.0), np.array([0.95, 0.6, 0.6]))
    assert stopper.should_stop(flat, best=0.8, final_epoch=9)
    assert not stopper.should_stop(flat, best=0.3, final_epoch=9)
    assert not stopper.should_stop(rising, best=0.8, final_epoch=27)
    # No decision before min_points, without a best so far, or at the final epoch.
    assert stopper.probability(flat[:2], best=0.8, final_epoch=9) is None
    assert stopper.probability(flat, best=None, final_epoch=9) is None
    assert stopper.probability(flat, best=0.8, final_epoch=4) is None


def test_bad_curves_and_options_are_named():
    with pytest.raises(curves.CurveError, match="non-finite value nan at point 1"):
        curves.fit_curve([0.3, float("nan"), 0.5, 0.6])
    with pytest.raises(curves.CurveError, match="non-finite"):
        curves.CurveStopper().should_stop([0.3, float("inf")], best=0.5, final_epoch=9)
    with pytest.raises(curves.CurveError, match="has 2 point"):
        curves.fit_curve([0.3, 0.4])
    with pytest.raises(curves.CurveError, match="accuracies in \\[0, 1\\]"):
        curves.fit_curve([30.0, 40.0, 50.0])
    with pytest.raises(curves.CurveError, match="increasing"):
        curves.fit_curve([0.3, 0.4, 0.5], x=[1, 3, 2])
    with pytest.raises(curves.CurveError, match="before the last observed epoch"):
        curves.fit_curve([0.3, 0.4, 0.5, 0.55]).prob_above(0.5, 2)
    with pytest.raises(curves.CurveError, match="unknown curve families \\['pow5'\\]"):
        curves.fit_curve([0.3, 0.4, 0.5], families=("pow5",))
    with pytest.raises(curves.CurveError, match="threshold"):
        curves.CurveStopper(threshold=1.5)
    with pytest.raises(curves.CurveError, match="unknown early_stop option"):
        curves.stopper_from_config({"treshold": 0.1})
    assert curves.stopper_from_config({"enabled": False, "threshold": 0.1}) is None
    assert curves.stopper_from_config({"threshold": 0.1}) == curves.CurveStopper(threshold=0.1)
    assert issubclass(curves.CurveError, ValueError)
