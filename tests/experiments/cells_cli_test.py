"""`python -m experiments.cells`: the table's JSON rows and the cell drawings."""

import json
import os
import subprocess
import sys

import pytest

from jnas.spaces.draw import cell_dot, cell_graph, draw_genotype
from jnas.spaces.published import PUBLISHED

KEYS = {"genotype", "network", "params", "params_with_aux", "madds"}


def _run(repo_root, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cells", *args],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # builds the PNAS networks in a subprocess (25 s cold); the figures are
# checked in process by tests/spaces/cells_test.py
def test_json_rows(tmp_path, repo_root):
    path = tmp_path / "cells.json"
    out = _run(repo_root, f"--json={path}", "--only=PNAS")
    rows = json.loads(path.read_text())
    assert all(KEYS <= set(r) for r in rows)
    by = {(r["genotype"], r["network"], r["shape"]): r for r in rows}
    assert set(by) == {
        ("PNAS", "cifar", "darts"),
        ("PNAS", "cifar", "paper"),
        ("PNAS", "imagenet", "darts"),
    }
    darts = by[("PNAS", "cifar", "darts")]
    assert (darts["C"], darts["layers"]) == (36, 20)
    assert darts["params"] < darts["params_with_aux"] and darts["madds"] > 0
    # PNAS evaluated another network: the table shows both shapes and says so.
    paper = by[("PNAS", "cifar", "paper")]
    assert (paper["C"], paper["layers"]) == (48, 9) and paper["note"] and darts["note"]
    assert abs(paper["params"] / 3.2e6 - 1) < 0.05
    assert "PNASNet-5" in out and f"{paper['params']:,}" in out


def test_draw_writes_png_and_svg(tmp_path, repo_root):
    out = _run(repo_root, "--draw=P-DARTS", f"--out={tmp_path}")
    for cell in ("normal", "reduce"):
        for ext in ("png", "svg"):
            path = tmp_path / f"{cell}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, path
            assert str(path) in out
    assert (tmp_path / "normal.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in (tmp_path / "normal.svg").read_text()


def test_graph_omits_nothing():
    g = PUBLISHED["NASNet_A"]
    nodes, edges = cell_graph(g, "reduce")
    assert [n for n, _ in nodes] == ["c_{k-2}", "c_{k-1}", "0", "1", "2", "3", "4", "c_{k}"]
    labelled = [e for e in edges if e[2]]
    assert len(labelled) == len(g.reduce) == 10
    assert ("1", "3", "skip_connect") in labelled  # state 3 = node 1
    assert sorted(e[0] for e in edges if e[1] == "c_{k}") == ["2", "3", "4"]
    dot = cell_dot(g, "reduce")
    assert dot.count("->") == 13 and 'label="sep_conv_7x7"' in dot


@pytest.mark.parametrize("backend", ["matplotlib", "auto"])
def test_draw_backends(tmp_path, backend):
    paths = draw_genotype(PUBLISHED["DARTS_V2"], str(tmp_path), backend=backend)
    assert {os.path.basename(p) for p in paths} == {
        "normal.dot",
        "normal.png",
        "normal.svg",
        "reduce.dot",
        "reduce.png",
        "reduce.svg",
    }
