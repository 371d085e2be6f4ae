"""Multi-fidelity strategies in the tabular scan: each candidate looked up and charged at its
budget, the final choice among full-budget queries (a host replay of the trace is the
reference), and budgets a table cannot apply refused before anything runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas import tabular
from jnas.strategies import multi_fidelity as mf
from jnas.strategies.base import FidelityError, make_strategy
from jnas.tabular import experiment
from tests.tabular.nb201_test import TABLE_PATH
from tests.tabular.search_test import OBJECTIVE, SPACE

# Two fidelities of the toy table: at "12" the validation accuracy is noisier and cheaper.
_NOISE = np.random.default_rng(0).normal(0, 10, OBJECTIVE.valid.shape[0]).astype(np.float32)
_SECONDS = np.asarray(OBJECTIVE.seconds)
MULTI = OBJECTIVE.replace(
    fidelity_valid=jnp.stack([OBJECTIVE.valid + _NOISE, OBJECTIVE.valid]),
    fidelity_seconds=jnp.asarray(np.stack([0.06 * _SECONDS, _SECONDS])),
    fidelity_budgets=(12.0, 200.0),
)


def _replay(trace, levels, budget_value):
    """The host reference: count queries until the budget runs out, keep the best full one."""
    spent, best_valid, best_test = 0.0, -np.inf, np.nan
    for i in range(len(trace["codes"])):
        code, level = int(trace["codes"][i]), int(levels[i])
        cost = float(np.asarray(MULTI.fidelity_seconds)[level, code])
        if spent + cost > budget_value * (1 + 1e-6):
            break
        spent += cost
        valid = float(np.asarray(MULTI.fidelity_valid)[level, code])
        assert trace["counted"][i] and trace["valid"][i] == pytest.approx(valid)
        if level == 1 and valid > best_valid:
            best_valid, best_test = valid, float(np.asarray(MULTI.test)[code])
    assert not np.any(trace["counted"][i:])
    return spent, best_valid, best_test, i


@pytest.mark.parametrize(
    "name",
    ["hyperband", pytest.param("bohb", marks=pytest.mark.slow)],  # bohb: 11 s to compile
)
def test_each_query_is_charged_at_its_budget_and_the_choice_is_full_budget(name):
    options = dict(budgets=(12, 200))
    if name == "bohb":  # a smaller model: the same program, less work per ask
        options.update(num_samples=16, max_observations=64)
    strategy, params = make_strategy(name, SPACE.spec, 1, options)
    budget = tabular.make_budget(MULTI, 30)  # seconds: 30 x the mean full cost
    result = tabular.run_search(strategy, SPACE, MULTI, budget, jax.random.key(0), params=params)
    trace = jax.tree.map(np.asarray, result.trace)
    # The levels follow the strategy's schedule: Hyperband's (3 at 12 -> 1 at 200), (2 at 200)
    levels = np.resize(np.asarray(strategy.fidelity_schedule), len(trace["codes"]))
    np.testing.assert_array_equal(trace["full"], levels == 1)
    spent, best_valid, best_test, n = _replay(trace, levels, budget.value)
    assert int(result.num_queries) == n and n > 30  # cheap queries: more than 30 in all
    assert float(result.spent) == pytest.approx(spent, rel=1e-5)
    assert float(result.best_valid) == best_valid and float(result.best_test) == best_test
    # the scan is long enough: the budget, not the scan, ended the search
    assert not trace["counted"][-1]


def test_a_budget_the_table_lacks_is_refused_before_anything_runs():
    budget = tabular.make_budget(MULTI, 10)
    strategy, _ = make_strategy("hyperband", SPACE.spec, 1, dict(budgets=(12, 100)))
    with pytest.raises(
        FidelityError, match=r"budget\(s\) \[100.0\].*has results at \[12.0, 200.0\]"
    ):
        tabular.run_search(strategy, SPACE, MULTI, budget, jax.random.key(0))
    options = dict(budgets=(0.5, 1), budget_resource="data_fraction")
    strategy, _ = make_strategy("bohb", SPACE.spec, 1, options)
    with pytest.raises(FidelityError, match="counts its budgets in 'data_fraction'"):
        tabular.run_search(strategy, SPACE, MULTI, budget, jax.random.key(0))
    strategy, _ = make_strategy("successive_halving", SPACE.spec, 1, dict(budgets=(12, 200)))
    with pytest.raises(FidelityError, match="toy table cannot apply"):  # no fidelities at all
        tabular.run_search(strategy, SPACE, OBJECTIVE, budget, jax.random.key(0))


def test_queries_unit_charges_budget_over_the_full_budget():
    strategy, _ = make_strategy("successive_halving", SPACE.spec, 1, dict(budgets=(12, 200)))
    budget = tabular.make_budget(MULTI, 5, "queries")
    result = tabular.run_search(strategy, SPACE, MULTI, budget, jax.random.key(1))
    # rounds of 3 at 12/200 of a query and 1 at a full query: 1.18 queries per 4 rounds
    counted = np.asarray(result.trace["counted"])
    levels = np.resize(np.asarray(strategy.fidelity_schedule), counted.size)
    cost = np.where(levels == 1, 1.0, 0.06)
    n = int(np.searchsorted(np.cumsum(cost), 5.0 + 1e-6, "right"))
    assert int(result.num_queries) == n and counted[:n].all() and not counted[n:].any()


def test_the_scan_bound_is_tight_and_safe():
    hb = mf.Hyperband(SPACE.spec, budgets=(12, 200))
    cheapest = np.asarray([1.0, 10.0])
    # one cycle (3 x 1 + 3 x 10 = 33 s, 6 rounds); 100 s: 3 cycles (99 s) and 1 round more
    assert tabular.search._max_queries(hb, cheapest, 100.0) == 3 * 6 + 1 + 1
    random, _ = make_strategy("random", SPACE.spec, 1)
    assert tabular.search._max_queries(random, cheapest, 100.0) == 101


@pytest.mark.skipif(TABLE_PATH is None, reason="NAS-Bench-201 table not found")
def test_the_experiment_refuses_a_data_set_without_the_budgets_before_searching(monkeypatch):
    from experiments.configs import nb201_tiny

    config = nb201_tiny.get_config()
    config.benchmark_path = TABLE_PATH
    config.datasets = ("cifar10", "cifar100")
    config.strategies = ("random", "hyperband")
    config.hyperband = dict(budgets=(12.0, 200.0))
    ran = []
    monkeypatch.setattr(experiment, "run_search", lambda *a, **k: ran.append(a))
    with pytest.raises(FidelityError, match="200.0.*cifar100 table cannot apply.*\\[12.0\\]"):
        experiment.run_experiment(config)
    assert ran == []  # not even CIFAR-10's random search ran
