"""Tabular NAS benchmarks: NAS-Bench-201 as a lookup table, and whole searches in one jit."""

from jnas.tabular.nb201 import (
    DATASETS,
    ENV_VAR,
    Budget,
    NB201Table,
    Objective,
    SearchResult,
    TableError,
    best_so_far,
    load_table,
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
    "load_table",
    "make_budget",
    "run_search",
]
