"""Tests of the LSTM controller: exact log-probabilities, normalization, sampling frequencies."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces import discrete, nb201
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies import controller

ONE = DecisionSpec((Categorical("op", ("a", "b", "c", "d")),))
SMALL_NASRL = NasRLSpace(num_layers=3, filter_sizes=(1, 3), num_filters=(24, 36)).spec


@jax.jit
def _one_decision_logits_by_hand(params):
    """Logits of a 1-decision controller: one LSTM step on the start vector, then the head."""
    h = params["start"].shape[-1]
    cell = nn.OptimizedLSTMCell(h)
    carry = (jnp.zeros((1, h)), jnp.zeros((1, h)))
    _, hidden = cell.apply({"params": params["cell"]}, carry, params["start"])
    n = ONE.num_choices[0]
    return (hidden @ params["head_kernel"][0] + params["head_bias"][0])[0, :n]


def test_params_are_uniform_in_the_papers_range():
    params = controller.init(jax.random.key(0), nb201.SPEC)
    leaves = jax.tree.leaves(params)
    assert params["start"].shape == (1, controller.DEFAULT_HIDDEN_SIZE)
    assert all(float(jnp.max(jnp.abs(x))) <= controller.INIT_SCALE for x in leaves)
    assert float(jnp.std(jnp.concatenate([x.ravel() for x in leaves]))) > 0.03


def test_one_decision_log_prob_and_entropy_match_the_softmax_by_hand():
    params = controller.init(jax.random.key(1), ONE, hidden_size=6)
    logits = _one_decision_logits_by_hand(params)
    logp = jax.nn.log_softmax(logits)
    for a in range(4):
        lp, ent = controller.log_prob_and_entropy(params, jnp.array([a]), ONE)
        np.testing.assert_allclose(lp, logp[a], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(ent, -jnp.sum(jnp.exp(logp) * logp), rtol=1e-5)


def test_one_decision_sampling_frequencies_match_the_softmax():
    params = controller.init(jax.random.key(2), ONE, hidden_size=6)
    # Sharpen the head so the frequencies differ clearly from uniform.
    params["head_bias"] = params["head_bias"].at[0, :4].set(jnp.array([1.0, 0.0, -1.0, 0.5]))
    probs = np.asarray(jax.nn.softmax(_one_decision_logits_by_hand(params)))
    n = 20000
    keys = jax.random.split(jax.random.key(3), n)
    actions, logps, _ = jax.jit(jax.vmap(lambda k: controller.sample(params, k, ONE)))(keys)
    freq = np.bincount(np.asarray(actions[:, 0]), minlength=4) / n
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(probs * (1 - probs) / n).max())
    np.testing.assert_allclose(np.exp(logps), probs[np.asarray(actions[:, 0])], rtol=1e-5)


SPECS = pytest.mark.parametrize("spec", [nb201.SPEC, SMALL_NASRL], ids=["nb201", "nasrl"])


def _params(spec):
    # The same parameter shapes in every test of a spec, so jit's cache is shared between them.
    return controller.init(jax.random.key(4), spec, hidden_size=10)


@SPECS
def test_log_prob_is_the_sum_of_per_step_log_softmax(spec):
    params = _params(spec)
    actions, lp_sampled, ent = controller.sample(params, jax.random.key(5), spec)
    # One compilation for both teacher-forced functions.
    score = jax.jit(lambda p, a: (controller.logits(p, a, spec), controller.log_prob(p, a, spec)))
    rows, lp_scored = score(params, actions)
    rows = np.asarray(rows, np.float64)
    by_hand = 0.0
    for t, (row, a, n) in enumerate(zip(rows, np.asarray(actions), spec.num_choices, strict=True)):
        row = row[:n]
        if spec.names[t].split("/")[-1].startswith("anchor"):
            # An anchor bit: P(1) = sigmoid(l) = 1 / (1 + exp(-l)), the logit l in the 2nd slot.
            assert row[0] == 0.0
            p1 = 1.0 / (1.0 + np.exp(-row[1]))
            by_hand += np.log(p1 if a == 1 else 1.0 - p1)
        else:
            by_hand += row[a] - row.max() - np.log(np.sum(np.exp(row - row.max())))
    np.testing.assert_allclose(lp_scored, by_hand, rtol=1e-5)
    np.testing.assert_allclose(lp_sampled, by_hand, rtol=1e-5)
    assert float(ent) > 0


@SPECS
def test_probabilities_of_all_architectures_sum_to_one(spec):
    params = _params(spec)
    archs = jax.vmap(lambda c: discrete.from_code(spec, c))(jnp.arange(spec.size))
    logps = jax.jit(jax.vmap(lambda a: controller.log_prob(params, a, spec)))(archs)
    np.testing.assert_allclose(jnp.sum(jnp.exp(logps)), 1.0, rtol=1e-4)


def test_sampling_is_a_pure_function_of_the_key():
    params = _params(SMALL_NASRL)
    a1, lp1, _ = controller.sample(params, jax.random.key(8), SMALL_NASRL)
    a2, lp2, _ = controller.sample(params, jax.random.key(8), SMALL_NASRL)
    np.testing.assert_array_equal(a1, a2)
    assert float(lp1) == float(lp2)
    many = [controller.sample(params, jax.random.key(k), SMALL_NASRL)[0] for k in range(8)]
    assert len({tuple(np.asarray(a).tolist()) for a in many}) > 1
    SMALL_NASRL.validate(a1)  # every action is in range


def test_gradients_are_finite_with_padded_logits():
    # NAS-RL rows are padded with -inf (anchor bits, decisions with fewer choices): the
    # entropy's gradient must not be 0 * inf there, or one REINFORCE update makes every
    # parameter NaN (entropy weight 0 included).
    params = _params(SMALL_NASRL)
    actions, _, _ = controller.sample(params, jax.random.key(6), SMALL_NASRL)
    grads = jax.jit(
        jax.grad(lambda p: sum(controller.log_prob_and_entropy(p, actions, SMALL_NASRL)))
    )(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert any(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(grads["cell"]))
