"""Successive halving, Hyperband and BOHB (jnas.strategies.multi_fidelity) against references:
Li et al.'s Table 1, brute-force top-1/eta selection, uniform sampling, numpy densities."""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.spaces.base import Fidelity
from jnas.spaces.discrete import Categorical, DecisionSpec
from jnas.strategies import multi_fidelity as mf
from jnas.strategies.base import (
    FidelityError,
    budgets_of,
    fidelities_of,
    make_strategy,
    to_fidelity,
)

SPEC = DecisionSpec(tuple(Categorical(f"d{i}", tuple(range(5))) for i in range(6)))  # as NB201

# Li et al., JMLR 2018, Table 1 (R = 81, eta = 3): per bracket s, the rungs (n_i, r_i).
LI_TABLE_1 = [
    [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
    [(34, 3), (11, 9), (3, 27), (1, 81)],
    [(15, 9), (5, 27), (1, 81)],
    [(8, 27), (2, 81)],
    [(5, 81)],
]


@functools.partial(jax.jit, static_argnums=(0, 2, 3))
def _run(strategy, params, rewards_fn, rounds):
    """Asks and tells ``rounds`` times in one scan; returns archs, fidelity indices, model level.

    Compiled once per (strategy, reward, rounds): params are traced, so tests share programs.
    """
    key = jax.random.key(0)
    state = strategy.init(jax.random.key(1), params)

    def step(state, r):
        archs, state = strategy.ask(jax.random.fold_in(key, r), state, params)
        levels = fidelities_of(strategy, state)
        state, _ = strategy.tell(state, archs, rewards_fn(archs, r), params)
        level = strategy.model_level(state, params) if hasattr(strategy, "model_level") else -1
        return state, (archs, levels, level)

    return jax.lax.scan(step, state, jnp.arange(rounds))


def _noise(archs, r):
    """Distinct pseudo-random rewards (a function of the round, so ties cannot happen)."""
    return jax.random.uniform(jax.random.fold_in(jax.random.key(7), r), (archs.shape[0],))


def _sum(archs, r):
    """A toy objective: the sum of the codes (best: all 4s), scaled to [0, 1]."""
    del r
    return jnp.sum(archs, -1).astype(jnp.float32) / 24.0


BUDGETS = (12.0, 200.0)  # NAS-Bench-201's
HB = mf.Hyperband(SPEC, budgets=BUDGETS)
BOHB = mf.BOHB(SPEC, budgets=BUDGETS)


def test_hyperband_brackets_are_li_et_al_table_1():
    hb = mf.Hyperband(SPEC, min_budget=1, max_budget=81, eta=3)
    assert hb.budgets == (1.0, 3.0, 9.0, 27.0, 81.0)
    got = [[(n, hb.budgets[level]) for n, level in b] for b in hb.brackets()]
    assert got == LI_TABLE_1
    # The asks follow the table: one cycle of 206 rounds at these budgets, in this order
    # (the ask / tell mechanics on a schedule are checked by the successive-halving tests).
    expected = [r for bracket in LI_TABLE_1 for n, r in bracket for _ in range(n)]
    assert hb.period == len(expected) == 206
    np.testing.assert_array_equal(np.asarray(hb.budgets)[list(hb.fidelity_schedule)], expected)


def test_the_geometric_ladder_is_hpbandsters():
    # HpBandSter: max_budget * eta ** -linspace(K-1, 0, K), K = -int(log(min/max)/log(eta)) + 1
    for lo, hi, eta in [(1, 81, 3), (12, 200, 3), (0.5, 10, 2), (3, 3, 3)]:
        k = -int(np.log(lo / hi) / np.log(eta)) + 1
        ref = hi * np.power(eta, -np.linspace(k - 1, 0, k))
        np.testing.assert_allclose(mf.budget_ladder(lo, hi, eta), ref, rtol=1e-12)


def test_successive_halving_keeps_exactly_the_top_1_over_eta():
    eta, budgets = 3, (1, 3, 9)
    sh = mf.SuccessiveHalving(SPEC, budgets=budgets, eta=eta)
    rungs = [n for n, _ in sh.brackets()[0]]
    assert rungs == [eta ** (len(budgets) - 1 - i) for i in range(len(budgets))]
    rounds = 2 * sh.period  # two cycles: the second starts over with new candidates
    _, (archs, levels, _) = _run(sh, sh.default_params, _noise, rounds)
    archs, levels = np.asarray(archs)[:, 0], np.asarray(levels)[:, 0]
    rewards = np.asarray(jax.vmap(lambda r: _noise(jnp.zeros((1, 6)), r))(jnp.arange(rounds)))[:, 0]
    start = 0
    for _cycle in range(2):
        prev = None
        for i, n in enumerate(rungs):
            idx = np.arange(start, start + n)
            assert (levels[idx] == i).all()
            if prev is not None:  # brute force: the best n of the previous rung, best first
                best = prev[np.argsort(-rewards[prev], kind="stable")[:n]]
                np.testing.assert_array_equal(archs[idx], archs[best])
                assert n == len(prev) // eta
            prev, start = idx, start + n
    # eta = 2 over four budgets: 8, 4, 2, 1
    sh2 = mf.SuccessiveHalving(SPEC, budgets=(1, 2, 4, 8), eta=2)
    assert sh2.brackets() == [[(8, 0), (4, 1), (2, 2), (1, 3)]]


def test_a_population_fills_whole_rounds_and_keeps_the_top_1_over_eta():
    sh = mf.SuccessiveHalving(SPEC, budgets=(1, 3, 9), eta=3, population_size=2)
    # m = 2: rungs of 18, 6, 2 members (two brackets' worth): 9 + 3 + 1 rounds
    assert sh.period == 13
    _, (archs, levels, _) = _run(sh, sh.default_params, _noise, 13)
    levels = np.asarray(levels)
    np.testing.assert_array_equal(levels[:, 0], [0] * 9 + [1] * 3 + [2])
    assert (levels[:, 0] == levels[:, 1]).all()
    rewards = np.asarray(jax.vmap(lambda r: _noise(jnp.zeros((2, 6)), r))(jnp.arange(13)))
    archs, rewards = np.asarray(archs).reshape(26, 6), rewards.reshape(26)
    best = np.argsort(-rewards[:18], kind="stable")[:6]
    np.testing.assert_array_equal(archs[18:24], archs[best])
    # Hyperband on two budgets with m = 4: (12 at 12 epochs -> best 4 at 200), (8 at 200)
    hb = mf.Hyperband(SPEC, budgets=(12.0, 200.0), population_size=4)
    assert hb.fidelity_schedule == (0, 0, 0, 1, 1, 1)


def test_bohb_is_random_sampling_until_a_budget_has_enough_observations():
    # HpBandSter with d = 6 decisions: min_points_in_model 7, n_good = max(7, 15% of n),
    # n_bad = min(max(7, 85% of n), n - n_good); a model needs n_bad > 6, i.e. n >= 14.
    bohb, hb, rounds = BOHB, HB, 120
    _, (b_archs, b_levels, model) = _run(bohb, bohb.default_params, _sum, rounds)
    _, (h_archs, h_levels, _) = _run(hb, hb.default_params, _sum, rounds)
    np.testing.assert_array_equal(b_levels, h_levels)
    # observations per budget after each round (Hyperband's cycle: 3 at 12, 1 + 2 at 200)
    levels = np.asarray(b_levels)[:, 0]
    counts = np.stack([np.cumsum(levels == k) for k in range(2)], 1)
    expected_model = np.where(counts[:, 1] >= 14, 1, np.where(counts[:, 0] >= 14, 0, -1))
    np.testing.assert_array_equal(model, expected_model)
    first = int(np.argmax(expected_model >= 0)) + 1  # the first ask that may use a model
    np.testing.assert_array_equal(b_archs[:first], h_archs[:first])
    assert not np.array_equal(b_archs[first:], h_archs[first:])
    # random_fraction 1: never the model, Hyperband's asks throughout
    params = bohb.default_params.replace(random_fraction=jnp.float32(1.0))
    _, (all_random, _, _) = _run(bohb, params, _sum, rounds)
    np.testing.assert_array_equal(all_random, h_archs)


def test_bohb_density_ratio_matches_a_numpy_reference():
    bohb = mf.BOHB(SPEC, budgets=(200.0,))
    rng = np.random.default_rng(0)
    n, d = 40, 6
    data = rng.integers(0, 5, (n, d)).astype(np.int32)
    data[:10, :2] = 4  # a few good ones share values: small bandwidths there
    params = bohb.default_params
    good = np.zeros(n, bool)
    good[:10] = True
    bw = np.asarray(bohb._kde(jnp.asarray(data), jnp.asarray(good), 10, params))
    ref = 1.06 * data[good].std(0) * 10 ** (-1 / (4 + d))
    np.testing.assert_allclose(bw, np.clip(ref, 1e-3, 0.8), rtol=1e-5)
    xs = rng.integers(0, 5, (5, d)).astype(np.int32)
    pdf = np.asarray(bohb._pdf(jnp.asarray(xs), jnp.asarray(data), jnp.asarray(good), 10, bw))
    ref_pdf = [
        np.mean([np.prod(np.where(x == row, 1 - bw, bw / 4)) for row in data[good]]) for x in xs
    ]
    np.testing.assert_allclose(pdf, ref_pdf, rtol=1e-5)
    # syne-tune's encoding: the normal reference of index / c, c = 5 times smaller
    unit = mf.BOHB(SPEC, budgets=(200.0,), codes="unit")
    bw_unit = np.asarray(unit._kde(jnp.asarray(data), jnp.asarray(good), 10, params))
    np.testing.assert_allclose(bw_unit, np.clip(ref / 5, 1e-3, 0.8), rtol=1e-5)
    with pytest.raises(ValueError, match="codes must be one of"):
        mf.BOHB(SPEC, budgets=(200.0,), codes="onehot")


def test_the_model_proposes_better_than_uniform():
    """On a toy objective (reward = sum of the codes), BOHB's late asks beat uniform ones."""
    # random_fraction 0: every new candidate from the model once there is one (with HpBandSter's
    # third of uniform draws, 120 rounds are too few to tell it from uniform sampling)
    params = BOHB.default_params.replace(random_fraction=jnp.float32(0.0))
    _, (archs, _, _) = _run(BOHB, params, _sum, 120)
    late = np.asarray(archs)[60:, 0].sum(-1)
    assert late.mean() > 12 + 4  # uniform: mean 12, std 3.5 per ask


def test_new_strategies_compile_once_across_param_values():
    for cls, sweep in [
        (mf.BOHB, [dict(top_n_percent=10.0), dict(random_fraction=0.0), dict(min_bandwidth=0.1)]),
        (mf.Hyperband, [{}, {}]),
        (mf.SuccessiveHalving, [{}, {}]),
    ]:
        chex.clear_trace_counter()  # the counter is per function code: one strategy at a time
        strategy = cls(SPEC, budgets=BUDGETS)

        @jax.jit
        @chex.assert_max_traces(n=1)
        def step(state, key, params, strategy=strategy):
            archs, state = strategy.ask(key, state, params)
            return strategy.tell(state, archs, jnp.ones(archs.shape[0]), params)

        for i, values in enumerate(sweep):
            params = strategy.default_params
            params = params.replace(**{k: jnp.float32(v) for k, v in values.items()})
            state = strategy.init(jax.random.key(0), params)
            step(state, jax.random.key(i), params)


def test_budgets_and_fidelities_api():
    hb, params = make_strategy("hyperband", SPEC, 1, {"min_budget": 1, "max_budget": 9})
    assert budgets_of(hb) == (1.0, 3.0, 9.0)
    state = hb.init(jax.random.key(0), params)
    _, state = hb.ask(jax.random.key(1), state, params)
    assert fidelities_of(hb, state).tolist() == [0]  # the first bracket starts at 1
    random, rp = make_strategy("random", SPEC, 1)
    assert budgets_of(random) is None
    assert fidelities_of(random, random.init(jax.random.key(0), rp)) is None


def test_to_fidelity_maps_each_resource():
    full = Fidelity(num_steps=100, data_fraction=0.8, width=2.0)
    assert to_fidelity(full, "epochs", 12, 200) == Fidelity(None, 0.8, 2.0, epochs=12)
    assert to_fidelity(full, "num_steps", 25.0, 100).num_steps == 25
    assert to_fidelity(full, "data_fraction", 50, 200).data_fraction == pytest.approx(0.2)
    assert to_fidelity(full, "width", 100, 200).width == pytest.approx(1.0)
    with pytest.raises(FidelityError, match="unknown budget_resource 'pixels'"):
        to_fidelity(full, "pixels", 1, 2)
    with pytest.raises(FidelityError, match="outside"):
        to_fidelity(full, "width", 3, 2)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(min_budget=1, max_budget=81, eta=1), "eta must be > 1"),
        (dict(min_budget=1, max_budget=81, eta=0.5), "eta must be > 1"),
        (dict(min_budget=100, max_budget=81), "min_budget 100 is above max_budget 81"),
        (dict(min_budget=0, max_budget=81), "min_budget must be > 0"),
        (dict(budgets=(200, 12)), "strictly increasing"),
        (dict(budgets=(12, 200), max_budget=100), "max_budget 100 disagrees"),
        (dict(), "give min_budget and max_budget"),
        (dict(budgets=(1, 2), budget_resource="pixels"), "unknown budget_resource"),
    ],
)
@pytest.mark.parametrize("name", ["successive_halving", "hyperband", "bohb"])
def test_bad_options_are_named_errors(name, options, message):
    with pytest.raises(FidelityError, match=message):
        make_strategy(name, SPEC, 1, options)


def test_bad_bohb_params_are_named():
    with pytest.raises(ValueError, match="top_n_percent must be in"):
        make_strategy("bohb", SPEC, 1, dict(budgets=(1, 3), top_n_percent=0))
    with pytest.raises(ValueError, match="min_points_in_model must be >= d \\+ 1 = 7"):
        make_strategy("bohb", SPEC, 1, dict(budgets=(1, 3), min_points_in_model=3))


@pytest.mark.slow  # a BOHB search compiled with the option (8 s cold)
def test_exclude_observed_passes_over_evaluated_architectures():
    # 14 observations at the only budget: 7 copies of A (the best), 7 others. The model's
    # best proposal is A itself (exclude_observed=False proposes A with this key); with
    # exclude_observed it must be an architecture not observed yet.
    a = np.array([4, 3, 2, 1, 0, 4], np.int32)
    others = np.random.default_rng(1).integers(0, 5, (7, 6)).astype(np.int32)
    data = np.concatenate([np.tile(a, (7, 1)), others])
    bohb = mf.BOHB(SPEC, budgets=(200.0,), exclude_observed=True, max_observations=16)
    params = bohb.default_params
    params = params.replace(random_fraction=jnp.float32(0.0), min_bandwidth=jnp.float32(0.2))
    state = bohb.init(jax.random.key(0), params)
    model = dict(
        archs=state.model["archs"].at[0, :14].set(data),
        loss=state.model["loss"].at[0, :14].set(np.r_[-np.ones(7), np.zeros(7)]),
        count=state.model["count"].at[0].set(14),
    )
    state = state.replace(model=model)
    assert int(bohb.model_level(state, params)) == 0
    proposal = np.asarray(jax.jit(bohb._sample)(jax.random.key(3), state, params))
    assert not (proposal == data).all(1).any()
    # the same draw without the exclusion is A: the test would fail if nothing were excluded
    plain = dataclasses.replace(bohb, exclude_observed=False)
    np.testing.assert_array_equal(plain._sample(jax.random.key(3), state, params), a)
