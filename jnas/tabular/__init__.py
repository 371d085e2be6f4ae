"""Tabular NAS benchmarks: whole searches in one jit over any space with a table.

`jnas.tabular.search` holds the space-independent part (`Objective`, `make_budget`,
`run_search`, `best_so_far`); `jnas.tabular.nb201` reads the NAS-Bench-201 table, which the
`nb201` space's `load_table` returns.
"""

from jnas.tabular.nb201 import DATASETS, ENV_VAR, NB201Table, TableError, load_table
from jnas.tabular.search import (
    Budget,
    Objective,
    SearchResult,
    best_so_far,
    check_fidelities,
    make_budget,
    run_search,
)

__all__ = [
    "DATASETS",
    "ENV_VAR",
    "Budget",
    "NB201Table",
    "Objective",
    "SearchResult",
    "TableError",
    "best_so_far",
    "check_fidelities",
    "load_table",
    "make_budget",
    "run_search",
]
