"""NAS-Bench-201 as a tabular benchmark: the table, the search protocol, whole searches in one jit.

The table is the compact CSV described in `shared/nasbench201/README.md` (15,625 rows, one per
architecture, 22 columns). It is not shipped with jnas: `load_table(path)` takes its path, or
the environment variable `JNAS_NB201_PATH`, and raises a clear error when it is missing or has
the wrong shape. Rows are re-ordered by `jnas.spaces.nb201.to_code` (the base-5 op code), so a
lookup is one gather inside jit.

Protocol (NAS-Bench-201, Dong & Yang 2020, Sec. 5, for non-weight-sharing methods, as far as the
table allows): a search queries validation accuracy only and picks the architecture with the best
validation accuracy among its queries; the *test* accuracy of that choice is reported.

| dataset        | searched on (the reward)        | reported        | cost of a query        |
|----------------|---------------------------------|-----------------|------------------------|
| cifar10        | `c10_valid_acc` (200 epochs)    | `c10_test_acc`  | `c10_train_time_200_s` |
| cifar100       | `c100_valid_acc_12` (12 epochs) | `c100_test_acc` | 1 query                |
| ImageNet16-120 | `in16_valid_acc_12` (12 epochs) | `in16_test_acc` | 1 query                |

Test accuracies are 200-epoch; the table has no 200-epoch validation accuracy for CIFAR-100 and
ImageNet16-120, and training times for CIFAR-10 only.

With `fidelity="12"` every dataset is searched on its 12-epoch validation accuracy (the paper's
own setting), and a CIFAR-10 query costs 12 x `c10_epoch_time_s`.

Budget rule (`make_budget`): `budget` is a number of queries N. Where the table has training
times (CIFAR-10 only) the search instead gets N x (mean cost of a query over the table) simulated
seconds, so that both units give about N queries to a random search; a query that would exceed
the remaining time is not counted and ends the search (NAS-Bench-201's `R_EA.py` rule).
`unit="queries"` counts queries everywhere; `time_budget_s` sets the seconds directly.

The strategies receive the validation accuracy as a fraction in [0, 1] as their reward.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from types import ModuleType

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pandas as pd
from flax import struct

from jnas.spaces import discrete, nb201
from jnas.spaces.discrete import ArchitectureError, DecisionSpec
from jnas.strategies import discrete_registry

ENV_VAR = "JNAS_NB201_PATH"
NUM_ROWS = nb201.NUM_ARCHS
DATASETS = ("cifar10", "cifar100", "ImageNet16-120")
COLUMNS = (
    "arch_index", "arch_str", "op_code", "c10_valid_acc", "c10_valid_test_acc", "c10_test_acc",
    "c10_test_acc_nats", "c100_test_acc", "in16_test_acc", "c10_valid_acc_12", "c10_test_acc_12",
    "c100_valid_acc_12", "c100_test_acc_12", "in16_valid_acc_12", "in16_test_acc_12",
    "c10_flops_m", "c10_params_m", "c10_flops_m_rec", "c10_params_m_rec", "c10_latency_s",
    "c10_epoch_time_s", "c10_train_time_200_s",
)  # fmt: skip
_PREFIX = {"cifar10": "c10", "cifar100": "c100", "ImageNet16-120": "in16"}


class TableError(ValueError):
    """The table file is missing, unreadable, or not the NAS-Bench-201 table."""


@dataclasses.dataclass(frozen=True, eq=False)
class NB201Table:
    """The loaded table, rows ordered by code (`nb201.to_code`).

    Attributes:
      path: where it was read from.
      arch_index: int `[15625]`, the official NAS-Bench-201 index of each code.
      arch_str: object `[15625]`, the official architecture strings.
      columns: the numeric columns, each float64 `[15625]` by code.
    """

    path: str
    arch_index: np.ndarray
    arch_str: np.ndarray
    columns: dict[str, np.ndarray]

    def code_of(self, arch) -> int:
        """The code of an architecture given as an arch string or an int vector `[6]`."""
        vec = nb201.parse(arch) if isinstance(arch, str) else nb201.SPEC.validate(arch)
        return int(nb201.to_code(vec))

    def lookup(self, arch) -> dict:
        """Everything the table holds about one architecture (string or vector)."""
        code = self.code_of(arch)
        row = {k: float(v[code]) for k, v in self.columns.items()}
        return dict(arch_index=int(self.arch_index[code]), arch_str=str(self.arch_str[code]), **row)

    def objective(self, dataset: str, fidelity: str = "auto") -> Objective:
        """The arrays a search over `dataset` queries (see the module docstring).

        Args:
          dataset: `cifar10`, `cifar100` or `ImageNet16-120`.
          fidelity: `auto` (CIFAR-10: 200 epochs, others: 12), `12` (12 epochs everywhere) or
            `200` (CIFAR-10 only: the table has no 200-epoch validation for the others).

        Returns:
          An `Objective`.
        """
        if dataset not in _PREFIX:
            raise ValueError(f"unknown dataset {dataset!r}; known: {list(DATASETS)}")
        if fidelity not in ("auto", "12", "200"):
            raise ValueError(f"unknown fidelity {fidelity!r}; expected 'auto', '12' or '200'")
        p = _PREFIX[dataset]
        if dataset == "cifar10" and fidelity in ("auto", "200"):
            valid, seconds = "c10_valid_acc", self.columns["c10_train_time_200_s"]
        elif fidelity == "200":
            raise ValueError(f"the table has no 200-epoch validation accuracy for {dataset}")
        else:
            valid = f"{p}_valid_acc_12"
            seconds = 12.0 * self.columns["c10_epoch_time_s"] if dataset == "cifar10" else None
        test = f"{p}_test_acc"
        f32 = lambda x: None if x is None else jnp.asarray(x, jnp.float32)
        return Objective(
            valid=f32(self.columns[valid]),
            test=f32(self.columns[test]),
            seconds=f32(seconds),
            dataset=dataset,
            valid_column=valid,
            test_column=test,
        )

    def best(self, dataset: str) -> tuple[float, str, int]:
        """The table's best 200-epoch test accuracy for `dataset`, and that architecture.

        Returns:
          `(test accuracy %, arch string, arch index)`; ties go to the smallest index.
        """
        col = self.columns[f"{_PREFIX[dataset]}_test_acc"]
        tied = np.flatnonzero(col == col.max())
        code = int(tied[np.argmin(self.arch_index[tied])])
        return float(col[code]), str(self.arch_str[code]), int(self.arch_index[code])


class Objective(struct.PyTreeNode):
    """What a tabular search queries, by code: validation and test accuracy (%), query cost.

    Attributes:
      valid: float32 `[15625]`, searched on.
      test: float32 `[15625]`, reported for the final choice.
      seconds: float32 `[15625]` simulated training seconds of a query, or None (no times).
      dataset, valid_column, test_column: static names.
    """

    valid: jax.Array
    test: jax.Array
    seconds: jax.Array | None
    dataset: str = struct.field(pytree_node=False)
    valid_column: str = struct.field(pytree_node=False)
    test_column: str = struct.field(pytree_node=False)


def load_table(path: str | os.PathLike | None = None) -> NB201Table:
    """Reads and checks the NAS-Bench-201 table.

    Args:
      path: the `nb201.csv.gz` file; None or "" reads the environment variable `JNAS_NB201_PATH`.

    Returns:
      An `NB201Table`.

    Raises:
      TableError: the path is not set, the file is missing or unreadable, or it does not have
        the 15,625 rows and the columns of the table (the message says which).
    """
    source = "the benchmark_path argument"
    if not path:
        path, source = os.environ.get(ENV_VAR), f"${ENV_VAR}"
    if not path:
        raise TableError(
            "the NAS-Bench-201 table is not shipped with jnas: set the config key "
            f"`benchmark_path` or the environment variable {ENV_VAR} to its nb201.csv.gz file"
        )
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TableError(f"NAS-Bench-201 table not found at {path!r} (from {source})")
    try:
        df = pd.read_csv(path, dtype={"op_code": str})
    except Exception as e:  # noqa: BLE001 - any parse failure means the same to the user
        raise TableError(f"cannot read the NAS-Bench-201 table {path!r}: {e}") from e
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise TableError(f"{path!r} is not the NAS-Bench-201 table: missing columns {missing}")
    if len(df) != NUM_ROWS:
        raise TableError(f"{path!r} has {len(df)} rows, expected {NUM_ROWS} (one per arch)")
    numeric = [c for c in COLUMNS if c not in ("arch_str", "op_code")]
    for c in numeric:
        values = pd.to_numeric(df[c], errors="coerce")
        if values.isna().any():
            raise TableError(
                f"{path!r}: column {c!r} has {int(values.isna().sum())} missing or "
                "non-numeric values"
            )
    try:
        vectors = np.stack([nb201.from_op_code(c) for c in df["op_code"]])
        parsed = np.stack([nb201.parse(s) for s in df["arch_str"]])
    except ArchitectureError as e:
        raise TableError(f"{path!r}: bad architecture in the table: {e}") from e
    if not np.array_equal(vectors, parsed):
        bad = int(np.flatnonzero((vectors != parsed).any(1))[0])
        raise TableError(f"{path!r}: row {bad} has an op_code that does not match its arch_str")
    codes = np.asarray(jax.jit(jax.vmap(nb201.to_code))(vectors))
    if len(np.unique(codes)) != NUM_ROWS:
        raise TableError(f"{path!r}: some architectures appear twice")
    order = np.argsort(codes)
    return NB201Table(
        path=path,
        arch_index=df["arch_index"].to_numpy(np.int64)[order],
        arch_str=df["arch_str"].to_numpy(object)[order],
        columns={c: df[c].to_numpy(np.float64)[order] for c in numeric if c != "arch_index"},
    )


@dataclasses.dataclass(frozen=True)
class Budget:
    """Attributes: `unit` (`queries` or `seconds`), `value`, and `max_queries` (scan length)."""

    unit: str
    value: float
    max_queries: int


def make_budget(objective: Objective, budget: int, unit: str = "auto", time_budget_s=None):
    """The budget of one search under the rule in the module docstring.

    Args:
      objective: what is searched.
      budget: N, a number of queries.
      unit: `auto` (seconds where the objective has times, else queries), `queries`, `seconds`.
      time_budget_s: simulated seconds, overriding N x the mean query cost.

    Returns:
      A `Budget`.
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
    """The outcome of `run_search`; with `num_seeds`, every array has a leading seed axis.

    Final choice (best validation accuracy among the counted queries): `best_code`,
    `best_valid`, `best_test` (%), `num_queries`, `spent` (budget units used). The trace holds
    one entry per scan step: `codes`, `valid`, `test`, `counted` (within budget), `spent`
    (cumulative) and `best_test` (test accuracy of the best-validation architecture so far).
    """

    best_code: jax.Array
    best_valid: jax.Array
    best_test: jax.Array
    num_queries: jax.Array
    spent: jax.Array
    trace: dict


def _static_config(config):
    if config is None or dataclasses.is_dataclass(config):
        return config
    return ml_collections.FrozenConfigDict(dict(config.items()))


def _search_one(strategy, spec, config, max_queries, key, tables, budget_value, unit):
    """One search: init, then `max_queries` ask/lookup/tell steps in a `lax.scan`."""
    init_key, loop_key = jax.random.split(key)
    state = strategy.init(init_key, spec, config)

    def step(carry, t):
        state, spent, done, best_valid, best_test, best_code, n = carry
        state, arch = strategy.ask(state, jax.random.fold_in(loop_key, t))
        code = discrete.to_code(spec, arch)
        valid, test = tables["valid"][code], tables["test"][code]
        cost = tables["seconds"][code] if unit == "seconds" else jnp.float32(1.0)
        counted = jnp.logical_and(~done, spent + cost <= budget_value)
        state = strategy.tell(state, arch, valid / 100.0)
        better = jnp.logical_and(counted, valid > best_valid)
        carry = (
            state,
            jnp.where(counted, spent + cost, spent),
            ~counted,
            jnp.where(better, valid, best_valid),
            jnp.where(better, test, best_test),
            jnp.where(better, code, best_code),
            n + counted.astype(jnp.int32),
        )
        out = dict(codes=code, valid=valid, test=test, counted=counted, spent=carry[1])
        return carry, dict(out, best_test=carry[4])

    f32 = lambda x: jnp.asarray(x, jnp.float32)
    i32 = lambda x: jnp.asarray(x, jnp.int32)
    carry = (state, f32(0.0), jnp.asarray(False), f32(-jnp.inf), f32(jnp.nan), i32(-1), i32(0))
    carry, trace = jax.lax.scan(step, carry, jnp.arange(max_queries))
    _, spent, _, best_valid, best_test, best_code, n = carry
    return SearchResult(best_code, best_valid, best_test, n, spent, trace)


@functools.partial(jax.jit, static_argnames=("name", "spec", "config", "max_queries", "unit"))
def _search_many(keys, tables, budget_value, *, name, spec, config, max_queries, unit):
    one = functools.partial(
        _search_one, discrete_registry.get(name), spec, config, max_queries, unit=unit
    )
    return jax.vmap(lambda k: one(k, tables, budget_value))(keys)


def run_search(
    strategy: str | ModuleType,
    spec: DecisionSpec,
    objective: Objective,
    budget: Budget,
    key: jax.Array,
    *,
    config=None,
    num_seeds: int | None = None,
) -> SearchResult:
    """Runs whole searches on the table: one jit-compiled `lax.scan`, `vmap`ped over seeds.

    Seed s uses `jax.random.split(key, num_seeds)[s]` (a single search uses `key` itself); a
    search with key k initializes the strategy with `split(k)[0]` and asks at step t with
    `fold_in(split(k)[1], t)`.

    Args:
      strategy: a name in `jnas.strategies.discrete_registry` or the module itself.
      spec: the space; must be `jnas.spaces.nb201.SPEC`.
      objective: from `NB201Table.objective`.
      budget: from `make_budget`.
      key: a PRNG key.
      config: the strategy's options (mapping, `ConfigDict` or its config dataclass) or None.
      num_seeds: number of independent searches; None runs one, without a seed axis.

    Returns:
      A `SearchResult`.
    """
    if spec != nb201.SPEC:
        raise ValueError("the tabular benchmark indexes NAS-Bench-201 architectures only")
    name = strategy if isinstance(strategy, str) else discrete_registry.name_of(strategy)
    keys = jax.random.split(key, num_seeds) if num_seeds else key[None]
    # Only the arrays go in: the objective's names would make each dataset compile anew.
    tables = dict(valid=objective.valid, test=objective.test)
    if budget.unit == "seconds":
        tables["seconds"] = objective.seconds
    result = _search_many(
        keys,
        tables,
        jnp.float32(budget.value),
        name=name,
        spec=spec,
        config=_static_config(config),
        max_queries=budget.max_queries,
        unit=budget.unit,
    )
    return result if num_seeds else jax.tree.map(lambda x: x[0], result)


def best_so_far(result: SearchResult, grid) -> np.ndarray:
    """Test accuracy of the best-validation architecture found within each budget of `grid`.

    Args:
      result: a `SearchResult` with a seed axis.
      grid: budget values (queries or seconds, the budget's unit), increasing.

    Returns:
      float `[num_seeds, len(grid)]`, NaN where a seed had not finished a query yet.
    """
    spent = np.where(result.trace["counted"], result.trace["spent"], np.inf)
    best = np.asarray(result.trace["best_test"], np.float64)
    grid = np.asarray(grid, np.float64)
    out = np.full((spent.shape[0], grid.size), np.nan)
    for s in range(spent.shape[0]):
        idx = np.searchsorted(spent[s], grid, side="right") - 1
        out[s] = np.where(idx >= 0, best[s, np.maximum(idx, 0)], np.nan)
    return out
