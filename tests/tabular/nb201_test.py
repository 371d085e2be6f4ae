"""Tests of the NAS-Bench-201 table, the search protocol and whole searches in one jit.

The table is not part of jnas: these tests read it from $JNAS_NB201_PATH or from
<repo>/../shared/nasbench201/nb201.csv.gz, and are skipped when it is in neither place.
"""

import gzip
import os
import pathlib

import jax
import numpy as np
import pandas as pd
import pytest

from experiments.configs import nb201_tiny
from jnas import tabular
from jnas.spaces import nb201
from jnas.spaces.base import make_space
from jnas.strategies.base import make_strategy

_SHARED = pathlib.Path(__file__).resolve().parents[2].parent / "shared/nasbench201/nb201.csv.gz"
TABLE_PATH = os.environ.get("JNAS_NB201_PATH") or (str(_SHARED) if _SHARED.exists() else None)
needs_table = pytest.mark.skipif(TABLE_PATH is None, reason="NAS-Bench-201 table not found")

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ARCH_6111 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|" + (
    "nor_conv_1x1~2|"
)
# The tiny experiment's settings: the end-to-end test then reuses these compilations.
TINY = nb201_tiny.get_config()
SPACE = make_space(TINY.space)


@pytest.fixture(scope="module")
def table():
    if TABLE_PATH is None:
        pytest.skip("NAS-Bench-201 table not found")
    return tabular.load_table(TABLE_PATH)


@needs_table
def test_known_rows_of_the_readme(table):
    row = table.lookup(RESNET)
    assert row["arch_index"] == 11472
    np.testing.assert_allclose(
        [row["c10_valid_acc"], row["c10_test_acc"], row["c100_test_acc"], row["in16_test_acc"]],
        [90.86, 93.91, 70.89, 44.23],
        atol=0.006,
    )
    np.testing.assert_allclose([row["c10_flops_m"], row["c10_params_m"]], [78.56, 0.559], atol=6e-3)
    best = table.lookup(ARCH_6111)
    assert best["arch_index"] == 6111
    np.testing.assert_allclose(best["c10_test_acc"], 94.3733, atol=1e-4)
    np.testing.assert_allclose(best["c10_valid_acc"], 91.6067, atol=1e-4)
    # The README's best architectures (CIFAR-10: 6111 and 13714 tie; the smaller index wins).
    acc, arch, index = table.best("cifar10")
    assert (index, arch) == (6111, ARCH_6111) and acc == pytest.approx(94.3733, abs=1e-4)
    assert table.best("cifar100")[0] == pytest.approx(73.5133, abs=1e-4)
    assert table.best("cifar100")[2] == 9930
    assert table.best("ImageNet16-120")[0] == pytest.approx(47.3111, abs=1e-4)
    assert table.best("ImageNet16-120")[2] == 857
    assert table.lookup(nb201.parse(RESNET))["arch_str"] == RESNET  # a vector works too


@needs_table
def test_rows_are_ordered_by_base5_code(table):
    for code in [0, 1, 777, 15624]:
        arch = np.asarray(nb201.from_code(code))
        assert table.arch_str[code] == nb201.to_text(arch)
    assert sorted(table.arch_index.tolist()) == list(range(15625))


@needs_table
def test_objective_columns_follow_the_protocol(table):
    c10, c100 = table.objective("cifar10"), table.objective("cifar100")
    assert (c10.valid_column, c10.test_column) == ("c10_valid_acc", "c10_test_acc")
    assert (c100.valid_column, c100.test_column) == ("c100_valid_acc_12", "c100_test_acc")
    assert c100.seconds is None and c10.seconds is not None
    code = table.code_of(RESNET)
    np.testing.assert_allclose(c10.seconds[code], table.columns["c10_train_time_200_s"][code])
    c10_12 = table.objective("cifar10", fidelity="12")
    assert c10_12.valid_column == "c10_valid_acc_12"
    np.testing.assert_allclose(c10_12.seconds, 12 * table.columns["c10_epoch_time_s"], rtol=1e-6)
    with pytest.raises(ValueError, match="no 200-epoch validation"):
        table.objective("cifar100", fidelity="200")
    with pytest.raises(ValueError, match="unknown dataset"):
        table.objective("mnist")


@needs_table
def test_budget_rule(table):
    c10, in16 = table.objective("cifar10"), table.objective("ImageNet16-120")
    b = tabular.make_budget(c10, 100)
    mean = table.columns["c10_train_time_200_s"].mean()
    assert b.unit == "seconds" and b.value == pytest.approx(100 * mean)
    assert b.max_queries * table.columns["c10_train_time_200_s"].min() > b.value
    assert tabular.make_budget(c10, 100, "queries") == tabular.Budget("queries", 100.0, 100)
    assert tabular.make_budget(in16, 50) == tabular.Budget("queries", 50.0, 50)
    assert tabular.make_budget(c10, 10, time_budget_s=5000.0).value == 5000.0
    with pytest.raises(ValueError, match="no training times"):
        tabular.make_budget(in16, 50, "seconds")


def _loop_search(table, strategy, params, objective, budget, seed_key):
    """The same search as run_search, as a plain Python loop over rounds of ask / lookup / tell."""
    m = strategy.population_size
    cost_column = "c10_train_time_200_s" if budget.unit == "seconds" else None
    init_key, loop_key = jax.random.split(seed_key)
    state = strategy.init(init_key, params)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    spent, done, best_valid, best_test, codes, counted = np.float32(0), False, -np.inf, None, [], []
    for r in range(-(-budget.max_queries // m)):
        archs, state = ask(jax.random.fold_in(loop_key, r), state, params)
        rewards = []
        for i, arch in enumerate(np.asarray(archs)):
            row = table.lookup(nb201.to_text(arch))
            valid = np.float32(row[objective.valid_column])
            rewards.append(valid / np.float32(100))
            if r * m + i >= budget.max_queries:  # past the scan's length: not in the trace
                continue
            cost = np.float32(row[cost_column]) if cost_column else np.float32(1)
            ok = (not done) and spent + cost <= np.float32(budget.value)
            done = not ok
            if ok:
                spent = np.float32(spent + cost)
                if valid > best_valid:
                    best_valid, best_test = valid, row[objective.test_column]
            codes.append(int(nb201.op_code(arch), 5))
            counted.append(ok)
        state, _ = tell(state, archs, np.asarray(rewards, np.float32), params)
    return dict(best_test=best_test, spent=spent, codes=codes, counted=counted)


def _check_against_loop(table, name, objective, budget, section, num_seeds, m=1):
    key = jax.random.key(42)
    strategy, params = make_strategy(name, SPACE.spec, m, section)
    result = tabular.run_search(
        strategy, SPACE, objective, budget, key, params=params, num_seeds=num_seeds
    )
    for s, seed_key in enumerate(jax.random.split(key, num_seeds)):
        ref = _loop_search(table, strategy, params, objective, budget, seed_key)
        np.testing.assert_array_equal(result.trace["codes"][s], ref["codes"])
        np.testing.assert_array_equal(result.trace["counted"][s], ref["counted"])
        np.testing.assert_allclose(result.best_test[s], ref["best_test"], rtol=1e-6)
        np.testing.assert_allclose(result.spent[s], ref["spent"], rtol=1e-6)
        assert result.spent[s] <= budget.value
        assert int(result.num_queries[s]) == sum(ref["counted"])
        # The counted queries are a prefix: the search stops at the first one over budget.
        assert not np.any(np.diff(result.trace["counted"][s].astype(int)) > 0)
    return result


@needs_table
@pytest.mark.parametrize(
    "name",
    [
        "random",
        pytest.param("evolution", marks=pytest.mark.slow),
        "reinforce",
        pytest.param("local_search", marks=pytest.mark.slow),
    ],
)
def test_scan_and_vmap_reproduce_a_python_loop(table, name):
    objective = table.objective("cifar100")
    budget = tabular.make_budget(objective, TINY.budget)
    _check_against_loop(table, name, objective, budget, TINY.get(name), TINY.seeds)


@needs_table
@pytest.mark.parametrize("unit", [pytest.param("queries", marks=pytest.mark.slow), "seconds"])
def test_populations_count_the_budget_per_query_in_ask_order(table, unit):
    """5 members a round: a budget that ends inside a round counts only the queries before it."""
    objective = table.objective("cifar10")
    budget = tabular.make_budget(objective, 12, unit)
    result = _check_against_loop(table, "evolution", objective, budget, TINY.evolution, 2, m=5)
    rounds = -(-budget.max_queries // 5)
    assert result.trace["codes"].shape == (2, budget.max_queries)
    assert result.metrics["num_told"].shape == (2, rounds)
    np.testing.assert_array_equal(result.metrics["num_told"][0], 5 * np.arange(1, rounds + 1))


@needs_table
def test_seconds_budget_stops_at_the_first_query_over_budget(table):
    objective = table.objective("cifar10")
    budget = tabular.make_budget(objective, 6)
    assert budget.unit == "seconds"
    result = _check_against_loop(table, "random", objective, budget, None, 2)
    assert np.all(result.num_queries > 0)
    assert np.all(result.num_queries < budget.max_queries)  # the budget, not the scan, ended it


@needs_table
def test_random_search_over_seeds_is_sane(table):
    objective = table.objective("cifar100")
    budget = tabular.make_budget(objective, 100)
    result = tabular.run_search("random", SPACE, objective, budget, jax.random.key(0), num_seeds=64)
    # The queried architectures are uniform: their mean validation accuracy is the table's.
    queried = np.asarray(result.trace["valid"]).ravel()
    assert abs(queried.mean() - table.columns["c100_valid_acc_12"].mean()) < 0.5
    # NAS-Bench-201's paper: random search (no weight sharing) 71.04 +- 1.07 on CIFAR-100.
    assert 70.0 < float(np.mean(result.best_test)) < 72.2
    assert 0.3 < float(np.std(result.best_test)) < 2.0
    curves = tabular.best_so_far(result, np.arange(0, 101))
    assert np.all(np.isnan(curves[:, 0]))  # nothing is known before the first query
    np.testing.assert_allclose(curves[:, 1:], result.trace["best_test"], rtol=1e-6)
    np.testing.assert_allclose(curves[:, -1], result.best_test, rtol=1e-6)


def _write(path, df):
    with gzip.open(path, "wt") as f:
        df.to_csv(f, index=False)
    return str(path)


@needs_table
def test_load_errors_name_the_problem(tmp_path, monkeypatch):
    monkeypatch.delenv("JNAS_NB201_PATH", raising=False)
    with pytest.raises(tabular.TableError, match="JNAS_NB201_PATH"):
        tabular.load_table(None)
    with pytest.raises(tabular.TableError, match="not found"):
        tabular.load_table(tmp_path / "missing.csv.gz")
    garbage = tmp_path / "garbage.csv.gz"
    garbage.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(tabular.TableError, match="cannot read"):
        tabular.load_table(garbage)
    df = pd.read_csv(TABLE_PATH, dtype={"op_code": str})
    with pytest.raises(tabular.TableError, match="rows, expected 15625"):
        tabular.load_table(_write(tmp_path / "short.csv.gz", df.head(10)))
    with pytest.raises(tabular.TableError, match="missing columns.*c100_test_acc"):
        tabular.load_table(_write(tmp_path / "cols.csv.gz", df.drop(columns=["c100_test_acc"])))
    bad = df.copy()
    bad.loc[5, "c10_valid_acc"] = np.nan
    with pytest.raises(tabular.TableError, match="c10_valid_acc"):
        tabular.load_table(_write(tmp_path / "nan.csv.gz", bad))
    bad = df.copy()
    bad.loc[7, "op_code"] = bad.loc[8, "op_code"]
    with pytest.raises(tabular.TableError, match="row 7"):
        tabular.load_table(_write(tmp_path / "code.csv.gz", bad))
    monkeypatch.setenv("JNAS_NB201_PATH", TABLE_PATH)
    assert tabular.load_table().path == TABLE_PATH
    assert SPACE.load_table().path == TABLE_PATH  # the space's table is this one
