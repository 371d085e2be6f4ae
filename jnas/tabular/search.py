"""Whole searches over a tabular benchmark: one jit-compiled ``lax.scan``, ``vmap``ped over seeds.

Any space with a table works (``space.has_table``): the table's columns are arrays indexed by
``space.to_code(arch)``, so a query is one gather inside jit. An :class:`Objective` holds the
arrays a search reads (validation accuracy, searched on; test accuracy, reported; the cost of
a query in simulated seconds, or None), a :class:`Budget` how long it runs, and
:func:`run_search` runs any discrete strategy (a registered name or an object in the shape of
:class:`jnas.strategies.base.DiscreteStrategy`) against them.

Protocol (NAS-Bench-201, Dong & Yang 2020, Sec. 5): a search queries validation accuracy
only and picks the architecture with the best validation accuracy among its counted queries;
the *test* accuracy of that choice is reported. The strategies receive the validation
accuracy (in %) / 100 as their reward.

Budget rule (:func:`make_budget`): ``budget`` is a number of queries N. Where the objective
has costs the search instead gets N x (mean cost of a query over the table) simulated
seconds, so that both units give about N queries to a random search; a query that would
exceed the remaining time is not counted and ends the search (NAS-Bench-201's ``R_EA.py``
rule). ``unit="queries"`` counts queries everywhere; ``time_budget_s`` sets the seconds.

Multi-fidelity strategies (``jnas.strategies.base.budgets_of`` is not None: successive
halving, Hyperband, BOHB) ask each candidate at a budget of their ladder. The objective then
needs the table's fidelities (``fidelity_budgets``, ``fidelity_valid``, ``fidelity_seconds``):
a candidate is looked up in the validation column of its budget and costs that budget's
training seconds (or, counted in queries, budget / the table's full budget of a query); the
final choice is the best validation accuracy among the counted queries at the strategy's
largest budget (lower fidelities only steer the search), and its test accuracy is reported
as for every strategy. The budget is the same simulated time as the others'; the scan is
longer, since the cheapest query is cheaper. A budget the table does not have is a
:class:`jnas.strategies.base.FidelityError` before anything runs (:func:`check_fidelities`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jnas.strategies.base import FidelityError, budgets_of, fidelities_of, make_strategy


class Objective(struct.PyTreeNode):
    """What a tabular search queries, by code (``space.to_code``): accuracies (%) and costs.

    Attributes:
      valid: float32 ``[spec.size]``, searched on.
      test: float32 ``[spec.size]``, reported for the final choice.
      seconds: float32 ``[spec.size]`` simulated training seconds of a query, or None.
      dataset, valid_column, test_column: static names.
      fidelity_budgets: the budgets the table has results for (static, increasing; e.g.
        epochs ``(12.0, 200.0)``); empty where it has none for multi-fidelity strategies.
      fidelity_valid: float32 ``[len(fidelity_budgets), spec.size]``, validation accuracy
        (%) at each budget, or None.
      fidelity_seconds: float32 ``[len(fidelity_budgets), spec.size]``, training seconds at
        each budget, or None (no times).
      fidelity_resource: what the budgets count (static; ``epochs``).
    """

    valid: jax.Array
    test: jax.Array
    seconds: jax.Array | None
    dataset: str = struct.field(pytree_node=False)
    valid_column: str = struct.field(pytree_node=False)
    test_column: str = struct.field(pytree_node=False)
    fidelity_valid: jax.Array | None = None
    fidelity_seconds: jax.Array | None = None
    fidelity_budgets: tuple = struct.field(pytree_node=False, default=())
    fidelity_resource: str = struct.field(pytree_node=False, default="epochs")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Attributes: ``unit`` (``queries``/``seconds``), ``value``, ``max_queries`` (scan length)."""

    unit: str
    value: float
    max_queries: int


def make_budget(objective: Objective, budget: int, unit: str = "auto", time_budget_s=None):
    """The budget of one search under the rule in the module docstring.

    Args:
      objective: what is searched.
      budget: N, a number of queries.
      unit: ``auto`` (seconds where the objective has costs, else queries), ``queries``,
        ``seconds``.
      time_budget_s: simulated seconds, overriding N x the mean query cost.

    Returns:
      A :class:`Budget`.
    """
    if unit not in ("auto", "queries", "seconds"):
        raise ValueError(f"unknown budget unit {unit!r}; expected auto, queries or seconds")
    if int(budget) < 1:
        raise ValueError(f"budget must be at least 1 query, got {budget}")
    if unit == "seconds" and objective.seconds is None:
        raise ValueError(f"the table has no training times for {objective.dataset}")
    if unit == "queries" or objective.seconds is None:
        return Budget("queries", float(int(budget)), int(budget))
    seconds = np.asarray(objective.seconds, np.float64)
    value = float(time_budget_s) if time_budget_s else float(budget) * float(seconds.mean())
    return Budget("seconds", value, math.floor(value / float(seconds.min())) + 1)


class SearchResult(struct.PyTreeNode):
    """The outcome of :func:`run_search`; with ``num_seeds``, every array has a seed axis first.

    Final choice (best validation accuracy among the counted queries): ``best_code``,
    ``best_valid``, ``best_test`` (%), ``num_queries``, ``spent`` (budget units used). The
    trace holds one entry per query in ask order (``budget.max_queries`` of them): ``codes``,
    ``valid``, ``test``, ``counted`` (within budget), ``spent`` (cumulative) and ``best_test``
    (test accuracy of the best-validation architecture so far). ``metrics`` holds the
    strategy's ``tell`` metrics, one entry per round of ``population_size`` queries.
    """

    best_code: jax.Array
    best_valid: jax.Array
    best_test: jax.Array
    num_queries: jax.Array
    spent: jax.Array
    trace: dict
    metrics: dict


def check_fidelities(strategy, objective: Objective) -> tuple[int, ...] | None:
    """The rows of ``objective.fidelity_*`` of a multi-fidelity strategy's budgets.

    Returns:
      One row per budget of the strategy, or None for a single-fidelity strategy.

    Raises:
      FidelityError: the strategy counts another resource than the table, or asks for a
        budget the table has no results for (the message lists the table's).
    """
    budgets = budgets_of(strategy)
    if budgets is None:
        return None
    name = type(strategy).__name__
    resource = getattr(strategy, "budget_resource", "epochs")
    if resource != objective.fidelity_resource:
        raise FidelityError(
            f"{name} counts its budgets in {resource!r}, the {objective.dataset} table in "
            f"{objective.fidelity_resource!r}: set budget_resource={objective.fidelity_resource!r}"
        )
    have = tuple(float(b) for b in objective.fidelity_budgets)
    missing = [b for b in budgets if b not in have]
    if missing or objective.fidelity_valid is None:
        raise FidelityError(
            f"{name} asks for budget(s) {missing or list(budgets)} ({resource}), which the "
            f"{objective.dataset} table cannot apply: it has results at {list(have)} only; "
            "set the strategy's `budgets` to a subset of those"
        )
    return tuple(have.index(b) for b in budgets)


def _max_queries(strategy, cheapest, value: float) -> int:
    """An upper bound on the queries a multi-fidelity search can count within ``value``.

    Every query costs at least its budget's cheapest cost (``cheapest[level]``); a strategy
    with a ``fidelity_schedule`` (the levels of one cycle of rounds) spends at least that
    cycle's cheapest cost per cycle, which bounds the rounds far tighter than the cheapest
    budget alone (CIFAR-10, Hyperband on 12 and 200 epochs: 600 rounds instead of 5,319).
    """
    cheapest = np.asarray(cheapest, np.float64)
    schedule = getattr(strategy, "fidelity_schedule", None)
    if schedule is None:
        return math.floor(value / float(cheapest.min()) + 1e-6) + 1
    m = int(strategy.population_size)
    per_round = m * cheapest[np.asarray(schedule)]
    cycles = math.floor(value / float(per_round.sum()))
    left = value - cycles * float(per_round.sum())
    rounds = cycles * len(schedule) + int(np.searchsorted(np.cumsum(per_round), left, "right"))
    return (rounds + 1) * m


def _search_one(strategy, space, max_queries, unit, key, params, tables, budget_value):
    """One search: init, then rounds of ask / lookup / tell in a ``lax.scan``."""
    m = strategy.population_size
    multi = budgets_of(strategy) is not None
    top = len(budgets_of(strategy)) - 1 if multi else 0
    init_key, loop_key = jax.random.split(key)
    state = strategy.init(init_key, params)

    def query(acc, x):
        spent, done, best_valid, best_test, best_code, n = acc
        code, valid, test, cost, t, full = x
        counted = ~done & (t < max_queries) & (spent + cost <= budget_value)
        better = counted & full & (valid > best_valid)
        acc = (
            jnp.where(counted, spent + cost, spent),
            ~counted,
            jnp.where(better, valid, best_valid),
            jnp.where(better, test, best_test),
            jnp.where(better, code, best_code),
            n + counted.astype(jnp.int32),
        )
        out = dict(codes=code, valid=valid, test=test, counted=counted, spent=acc[0])
        if multi:
            out["full"] = full
        return acc, dict(out, best_test=acc[3])

    def round_(carry, r):
        state, acc = carry
        archs, state = strategy.ask(jax.random.fold_in(loop_key, r), state, params)
        codes = jax.vmap(space.to_code)(archs).astype(jnp.int32)
        test = tables["test"][codes]
        if multi:  # each member at its budget: that budget's column and cost
            levels = fidelities_of(strategy, state)
            valid = tables["fidelity_valid"][levels, codes]
            if unit == "seconds":
                cost = tables["fidelity_seconds"][levels, codes]
            else:
                cost = tables["fidelity_cost"][levels]
            full = levels == top
        else:
            valid = tables["valid"][codes]
            cost = tables["seconds"][codes] if unit == "seconds" else jnp.ones((m,), jnp.float32)
            full = jnp.ones((m,), bool)
        xs = (codes, valid, test, cost, r * m + jnp.arange(m), full)
        if m == 1:  # no inner loop: a nested while costs the cheap strategies about 2x
            acc, out = query(acc, jax.tree.map(lambda x: x[0], xs))
            out = jax.tree.map(lambda x: x[None], out)
        else:
            acc, out = jax.lax.scan(query, acc, xs)
        state, metrics = strategy.tell(state, archs, valid / 100.0, params)
        return (state, acc), (out, metrics)

    f32 = lambda x: jnp.asarray(x, jnp.float32)
    i32 = lambda x: jnp.asarray(x, jnp.int32)
    acc = (f32(0.0), jnp.asarray(False), f32(-jnp.inf), f32(jnp.nan), i32(-1), i32(0))
    rounds = -(-max_queries // m)
    (_, acc), (trace, metrics) = jax.lax.scan(round_, (state, acc), jnp.arange(rounds))
    trace = jax.tree.map(lambda x: x.reshape(rounds * m)[:max_queries], trace)
    spent, _, best_valid, best_test, best_code, n = acc
    return SearchResult(best_code, best_valid, best_test, n, spent, trace, metrics)


@functools.partial(
    jax.jit, static_argnames=("strategy", "space", "max_queries", "unit", "params_axes")
)
def _search_many(keys, params, tables, budget_value, *, strategy, space, max_queries, unit,
                 params_axes):  # fmt: skip
    one = functools.partial(_search_one, strategy, space, max_queries, unit)
    axes = jax.tree.unflatten(jax.tree.structure(params), params_axes)
    return jax.vmap(one, in_axes=(0, axes, None, None))(keys, params, tables, budget_value)


def _params_axes(strategy, params, num_seeds) -> tuple:
    """Per leaf of ``params``: 0 if it has one value per seed (a leading axis), else None."""
    default = strategy.default_params
    if jax.tree.structure(params) != jax.tree.structure(default):
        raise ValueError(
            f"params {params!r} do not have the structure of the strategy's "
            f"default_params {default!r}"
        )
    axes = []
    for p, d in zip(jax.tree.leaves(params), jax.tree.leaves(default), strict=True):
        extra = np.ndim(p) - np.ndim(d)
        if extra == 1 and num_seeds and np.shape(p)[0] == num_seeds:
            axes.append(0)
        elif extra == 0:
            axes.append(None)
        else:
            raise ValueError(
                f"a params leaf of shape {np.shape(p)} is neither shared (shape "
                f"{np.shape(d)}) nor batched per seed (a leading axis of num_seeds = "
                f"{num_seeds})"
            )
    return tuple(axes)


def run_search(strategy, space, objective: Objective, budget: Budget, key: jax.Array, *,
               params=None, num_seeds: int | None = None) -> SearchResult:  # fmt: skip
    """Runs whole searches on a table: one jit-compiled ``lax.scan``, ``vmap``ped over seeds.

    The scan runs rounds of ``strategy.population_size`` asks; the budget is counted per
    query, in ask order, and the queries of the last round past ``budget.max_queries`` are not
    counted. Seed s uses ``jax.random.split(key, num_seeds)[s]`` (a single search uses ``key``
    itself); a search with key k initializes the strategy with ``split(k)[0]`` and asks in
    round r with ``fold_in(split(k)[1], r)`` (member i: ``fold_in`` of that with i).

    Args:
      strategy: a registered discrete strategy name (built with its defaults and a population
        of 1) or a strategy object (e.g. from ``make_strategy`` / ``from_config``).
      space: a space with a table (``space.has_table``); architectures are looked up at
        ``space.to_code(arch)``.
      objective: the table's arrays, e.g. from ``space.load_table(path).objective(dataset)``.
      budget: from :func:`make_budget`.
      key: a PRNG key.
      params: the strategy's params: None (its ``default_params``), or a pytree of their
        structure whose leaves are each shared by every seed (the default's shape) or given
        per seed (a leading axis of ``num_seeds``), e.g. a sweep over learning rates.
      num_seeds: number of independent searches; None runs one, without a seed axis.

    Returns:
      A :class:`SearchResult`; for a multi-fidelity strategy the trace also has ``full``
      (the query was at the strategy's largest budget) and is as long as the budget allows
      queries at its cheapest budget.

    Raises:
      FidelityError: a multi-fidelity strategy asks for a budget the objective lacks.
      ValueError: the space has no table, the objective does not cover the space, the
        strategy searches another space, or the params are neither shared nor per seed.
    """
    if not getattr(space, "has_table", False):
        raise ValueError(
            f"space {type(space).__name__} has no table: run_search needs a tabular benchmark "
            "(a space that implements load_table)"
        )
    spec = space.spec
    if isinstance(strategy, str):
        strategy, _ = make_strategy(strategy, spec, 1)
    if strategy.spec != spec:
        raise ValueError("the strategy was built for another space's decisions")
    size = np.shape(objective.valid)[0]
    if size != spec.size:
        raise ValueError(f"the objective has {size} rows but the space {spec.size} architectures")
    params = strategy.default_params if params is None else params
    axes = _params_axes(strategy, params, num_seeds)
    keys = jax.random.split(key, num_seeds) if num_seeds else key[None]
    # Only the arrays go in: the objective's names would make each dataset compile anew.
    tables = dict(valid=objective.valid, test=objective.test)
    if budget.unit == "seconds":
        tables["seconds"] = objective.seconds
    max_queries = budget.max_queries
    rows = check_fidelities(strategy, objective)
    if rows is not None:
        rows_ = np.asarray(rows)
        tables = dict(
            test=objective.test, fidelity_valid=jnp.asarray(objective.fidelity_valid)[rows_]
        )
        if budget.unit == "seconds":
            if objective.fidelity_seconds is None:
                raise FidelityError(
                    f"the {objective.dataset} table has no training times per budget"
                )
            seconds = np.asarray(objective.fidelity_seconds, np.float64)[rows_]
            tables["fidelity_seconds"] = jnp.asarray(seconds, jnp.float32)
            cheapest = seconds.min(axis=1)
        else:  # a query at budget b costs b / (the table's full budget) queries
            cost = np.asarray(budgets_of(strategy)) / float(objective.fidelity_budgets[-1])
            tables["fidelity_cost"] = jnp.asarray(cost, jnp.float32)
            cheapest = cost
        max_queries = _max_queries(strategy, cheapest, budget.value)
    result = _search_many(
        keys,
        params,
        tables,
        jnp.float32(budget.value),
        strategy=strategy,
        space=space,
        max_queries=max_queries,
        unit=budget.unit,
        params_axes=axes,
    )
    return result if num_seeds else jax.tree.map(lambda x: x[0], result)


def best_so_far(result: SearchResult, grid) -> np.ndarray:
    """Test accuracy of the best-validation architecture found within each budget of ``grid``.

    Args:
      result: a :class:`SearchResult` with a seed axis.
      grid: budget values (queries or seconds, the budget's unit), increasing.

    Returns:
      float ``[num_seeds, len(grid)]``, NaN where a seed had not finished a query yet.
    """
    spent = np.where(result.trace["counted"], result.trace["spent"], np.inf)
    best = np.asarray(result.trace["best_test"], np.float64)
    grid = np.asarray(grid, np.float64)
    out = np.full((spent.shape[0], grid.size), np.nan)
    for s in range(spent.shape[0]):
        idx = np.searchsorted(spent[s], grid, side="right") - 1
        out[s] = np.where(idx >= 0, best[s, np.maximum(idx, 0)], np.nan)
    return out
