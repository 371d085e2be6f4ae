"""End-to-end test of `python -m experiments.tabular` on the tiny NAS-Bench-201 config."""

import json
import os
import pathlib
import sys

import pytest
from absl import flags

from experiments import tabular as tabular_main
from jnas.tabular import TableError, experiment

REPO = pathlib.Path(__file__).resolve().parents[2]
_SHARED = REPO.parent / "shared/nasbench201/nb201.csv.gz"
TABLE_PATH = os.environ.get("JNAS_NB201_PATH") or (str(_SHARED) if _SHARED.exists() else None)
TINY = str(REPO / "experiments/configs/nb201_tiny.py")


@pytest.mark.skipif(TABLE_PATH is None, reason="NAS-Bench-201 table not found")
def test_cli_prints_the_table_and_writes_json_rows(tmp_path, capsys, monkeypatch):
    out = tmp_path / "rows.json"
    argv = ["tabular", f"--config={TINY}", f"--config.benchmark_path={TABLE_PATH}", f"--json={out}"]
    monkeypatch.setattr(sys, "argv", argv)  # config_flags reads its overrides from sys.argv
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    try:
        tabular_main.main(argv[:1])
    finally:
        flags.FLAGS.unparse_flags()
    printed = capsys.readouterr().out
    assert "| cifar10 | evolution | 3 |" in printed
    rows = json.loads(out.read_text())
    assert [(r["dataset"], r["strategy"]) for r in rows] == [
        (d, s)
        for d in ("cifar10", "cifar100", "ImageNet16-120")
        for s in ("random", "evolution", "reinforce")
    ]
    best = {"cifar10": 94.3733, "cifar100": 73.5133, "ImageNet16-120": 47.3111}
    for r in rows:
        assert set(experiment.ROW_KEYS) <= set(r)
        assert r["seeds"] == 3 and r["budget"] == 12 and r["budget_unit"] == "queries"
        assert r["best_test_acc_in_table"] == pytest.approx(best[r["dataset"]], abs=1e-4)
        # 12 queries find a good but not the best architecture.
        assert best[r["dataset"]] - 12 < r["mean_test_acc"] <= best[r["dataset"]]
        assert 0 <= r["std_test_acc"] < 5


def test_missing_table_and_bad_names_raise_clear_errors(monkeypatch):
    from experiments.configs import nb201_tiny

    monkeypatch.delenv("JNAS_NB201_PATH", raising=False)
    config = nb201_tiny.get_config()
    config.benchmark_path = None
    with pytest.raises(TableError, match="benchmark_path.*JNAS_NB201_PATH"):
        experiment.run_experiment(config)
    config.strategies = ("random", "hill_climbing")  # found before the table is read
    with pytest.raises(ValueError, match="unknown strategy 'hill_climbing'.*local_search"):
        experiment.run_experiment(config)
    config.evolution.population_size = 3
    config.strategies = ("evolution",)
    with pytest.raises(ValueError, match="population_size is not a strategy option"):
        experiment.run_experiment(config)
    config.space.name = "nasrl"
    with pytest.raises(ValueError, match="'nasrl' has no table"):
        experiment.run_experiment(config)


@pytest.mark.skipif(TABLE_PATH is None, reason="NAS-Bench-201 table not found")
def test_unknown_dataset_names_the_tables_datasets():
    from experiments.configs import nb201_tiny

    config = nb201_tiny.get_config()
    config.benchmark_path = TABLE_PATH
    config.datasets = ("cifar10", "mnist")
    with pytest.raises(ValueError, match=r"unknown dataset\(s\) \['mnist'\].*cifar100"):
        experiment.run_experiment(config)
