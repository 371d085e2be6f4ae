"""The tabular experiment of `experiments/tabular.py`: strategies x data sets x seeds.

`config.space` names a space with a table (`{"name": "nb201"}`) and `config.strategies` the
discrete strategies, both found through their registries; each strategy is built by
`make_strategy(name, space.spec, config.population_size, config.get(name))`. For every data
set and strategy, `run_search` runs `config.seeds` independent searches as one vmapped scan,
and one row reports the mean and standard deviation over seeds of the test accuracy of each
search's final choice, next to the table's best test accuracy.

Multi-fidelity strategies (`successive_halving`, `hyperband`, `bohb`) run beside the others
on the same simulated-time budget and seeds; each candidate is judged at the budget its
strategy asks (`jnas.tabular.search`). Every (data set, strategy) pair is checked before the
first search runs: a budget a data set's table lacks is a `FidelityError` naming both.

A table is what the space's `load_table(path)` returns; the experiment uses its `datasets`,
`objective(dataset, fidelity)` (an `Objective`) and `best(dataset)` (`(test accuracy %,
arch text, index)`), as `jnas.tabular.nb201.NB201Table` has them.
"""

from __future__ import annotations

import jax
import numpy as np

from jnas.spaces.base import make_space
from jnas.strategies.base import make_strategy
from jnas.tabular.search import best_so_far, check_fidelities, make_budget, run_search

ROW_KEYS = (
    "strategy",
    "dataset",
    "seeds",
    "budget",
    "mean_test_acc",
    "std_test_acc",
    "best_test_acc_in_table",
)


def _searches(config):
    """Yields `(dataset, strategy, objective, budget, result, table)` for every pair."""
    space = make_space(config.space)
    if not space.has_table:
        raise ValueError(f"config.space {config.space.name!r} has no table to search")
    m = int(config.get("population_size", 1))
    # Built before the table is read, so that a bad name or option fails early.
    built = {
        name: make_strategy(name, space.spec, m, config.get(name))
        for name in list(config.strategies)
    }
    if int(config.seeds) < 1:
        raise ValueError(f"seeds must be >= 1, got {config.seeds}")
    table = space.load_table(config.benchmark_path)
    datasets = list(config.datasets)
    unknown = [d for d in datasets if d not in table.datasets]
    if unknown:
        raise ValueError(f"unknown dataset(s) {unknown}; known: {list(table.datasets)}")
    objectives = {d: table.objective(d, config.fidelity) for d in datasets}
    for objective in objectives.values():  # every pair, before anything runs
        for strategy, _ in built.values():
            check_fidelities(strategy, objective)
    root = jax.random.key(config.seed)
    for d, dataset in enumerate(datasets):
        objective = objectives[dataset]
        budget = make_budget(objective, config.budget, config.budget_unit, config.time_budget_s)
        key = jax.random.fold_in(root, d)  # the same seeds for every strategy
        for name, (strategy, params) in built.items():
            result = run_search(
                strategy, space, objective, budget, key, params=params, num_seeds=int(config.seeds)
            )
            yield dataset, name, objective, budget, result, table


def run_experiment(config) -> list[dict]:
    """Runs the searches a config describes and returns one row per (dataset, strategy).

    Args:
      config: a `ConfigDict` as in `experiments/configs/nb201.py`: `space`, `benchmark_path`,
        `seed`, `seeds`, `population_size`, `budget`, `budget_unit`, `time_budget_s`,
        `fidelity`, `strategies`, `datasets`, and one section of options per strategy (e.g.
        `config.evolution`; a strategy without one runs with its defaults).

    Returns:
      A list of dicts with the keys `ROW_KEYS` (accuracies in %, std over seeds with ddof=1),
      plus `budget_unit`, `budget_value` (the budget in that unit), `mean_queries`,
      `mean_valid_acc`, `valid_column`, `test_column`, `best_arch_in_table` and
      `best_arch_index_in_table`.
    """
    rows = []
    for dataset, name, objective, budget, result, table in _searches(config):
        test = np.asarray(result.best_test, np.float64)
        best_acc, best_arch, best_index = table.best(dataset)
        rows.append(
            dict(
                strategy=name,
                dataset=dataset,
                seeds=int(config.seeds),
                budget=int(config.budget),
                mean_test_acc=float(test.mean()),
                std_test_acc=float(test.std(ddof=1)) if test.size > 1 else 0.0,
                best_test_acc_in_table=best_acc,
                budget_unit=budget.unit,
                budget_value=budget.value,
                mean_queries=float(np.mean(result.num_queries)),
                mean_valid_acc=float(np.mean(result.best_valid)),
                valid_column=objective.valid_column,
                test_column=objective.test_column,
                best_arch_in_table=best_arch,
                best_arch_index_in_table=best_index,
            )
        )
    return rows


def run_curves(config, num_points: int = 60) -> dict:
    """Best-so-far test accuracy against budget, mean and std over seeds, per data set.

    The curve of a search at budget x is the test accuracy of the best-validation architecture
    among its queries that fit in x (queries, or simulated seconds on CIFAR-10): the way the
    NAS-Bench papers draw search progress.

    Args:
      config: as for `run_experiment`.
      num_points: points on the budget axis.

    Returns:
      `{dataset: {"unit": str, "grid": [P], "best_in_table": float,
                  "strategies": {name: {"mean": [P], "std": [P]}}}}`; NaN where fewer than
      all seeds had finished a query.
    """
    curves = {}
    for dataset, name, _, budget, result, table in _searches(config):
        entry = curves.setdefault(
            dataset,
            dict(
                unit=budget.unit,
                grid=np.linspace(0.0, budget.value, num_points),
                best_in_table=table.best(dataset)[0],
                strategies={},
            ),
        )
        values = best_so_far(result, entry["grid"])
        entry["strategies"][name] = dict(mean=values.mean(axis=0), std=values.std(axis=0))
    return curves


def format_rows(rows: list[dict]) -> str:
    """A Markdown table of `run_experiment`'s rows."""
    lines = [
        "| dataset | strategy | seeds | budget | queries (mean) | test acc % (mean ± std) "
        "| best in table |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["budget_unit"] == "seconds":
            budget = f"{r['budget_value']:,.0f} s (= {r['budget']} mean queries)"
        else:
            budget = f"{r['budget']} queries"
        lines.append(
            f"| {r['dataset']} | {r['strategy']} | {r['seeds']} | {budget} "
            f"| {r['mean_queries']:.1f} | {r['mean_test_acc']:.2f} ± {r['std_test_acc']:.2f} "
            f"| {r['best_test_acc_in_table']:.2f} |"
        )
    lines.append("")
    seen = set()
    for r in rows:
        if r["dataset"] not in seen:
            seen.add(r["dataset"])
            lines.append(
                f"best in table, {r['dataset']}: {r['best_test_acc_in_table']:.2f} "
                f"(index {r['best_arch_index_in_table']}) {r['best_arch_in_table']}"
            )
    return "\n".join(lines)
