"""experiments.search as a user runs it: the strategy's kind picks the host loop, and a
gradient search prints its genotype and where the pictures of its cells were written."""

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_gradient_search_prints_its_genotype_and_cell_pictures(
    tmp_path, repo_root, fake_fmnist_dir
):
    workdir = tmp_path / "search"
    cmd = [
        sys.executable,
        "-m",
        "experiments.search",
        "--config=experiments/configs/darts_tiny.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={fake_fmnist_dir}",
        "--config.model.n_nodes=2",
        "--config.model.multiplier=2",
        "--config.model.primitives=('none', 'max_pool_3x3', 'skip_connect', 'sep_conv_3x3')",
        "--config.search.epochs=1",
        "--config.search.max_steps_per_epoch=2",
    ]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if ": " in line)
    assert lines["genotype"] == (workdir / "genotype.txt").read_text().strip()
    pictures = lines["cell pictures"].split(", ")
    assert pictures == [str(workdir / "cells" / f"{c}.png") for c in ("normal", "reduce")]
    assert all(os.path.getsize(p) > 0 for p in pictures)
