"""NAS-Bench-201 as a tabular benchmark: the table and which of its columns a search reads.

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

Multi-fidelity strategies (successive halving, Hyperband, BOHB) are judged at budgets in
epochs. The objective of every data set carries the fidelities the table has, whatever
`fidelity` says (that picks the column of the single-fidelity strategies):

- cifar10: 12 epochs `c10_valid_acc_12` (12 x `c10_epoch_time_s` seconds), 200 epochs
  `c10_valid_acc` (`c10_train_time_200_s`);
- cifar100, ImageNet16-120: 12 epochs `*_valid_acc_12` only, no times;

so a ladder of 12 and 200 epochs applies to CIFAR-10 only (elsewhere a `FidelityError`).

The budget rule and the search itself are the space-independent `jnas.tabular.search`
(`make_budget`, `run_search`); `NB201Space.load_table` (the space registered as `nb201`)
returns this module's `NB201Table`.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jnas.errors import EXIT_DATA, JnasError
from jnas.spaces import nb201
from jnas.spaces.discrete import ArchitectureError
from jnas.tabular.search import Objective

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


class TableError(ValueError, JnasError):
    """The table file is missing, unreadable, or not the NAS-Bench-201 table."""

    exit_status = EXIT_DATA


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
    datasets = DATASETS  # what `objective` and `best` accept
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
        if dataset == "cifar10":
            budgets = (12.0, 200.0)
            by_budget = np.stack([self.columns["c10_valid_acc_12"], self.columns["c10_valid_acc"]])
            times = np.stack(
                [12.0 * self.columns["c10_epoch_time_s"], self.columns["c10_train_time_200_s"]]
            )
        else:
            budgets, by_budget, times = (12.0,), self.columns[f"{p}_valid_acc_12"][None], None
        return Objective(
            valid=f32(self.columns[valid]),
            test=f32(self.columns[test]),
            seconds=f32(seconds),
            dataset=dataset,
            valid_column=valid,
            test_column=test,
            fidelity_valid=f32(by_budget),
            fidelity_seconds=f32(times),
            fidelity_budgets=budgets,
            fidelity_resource="epochs",
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
