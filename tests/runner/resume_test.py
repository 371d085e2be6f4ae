"""Kill and resume, at a point the test controls: each host loop is run in a subprocess that
SIGKILLs itself right after it saved checkpoint N (tests/scripts/kill_after_checkpoint.py),
then rerun to the end; everything it computes must equal an uninterrupted run's, bit for bit:
the final metrics, the genotype or the history rows, every metrics row and the last
checkpointed state. The uninterrupted run is made first in the killed process. A resumed
retraining or one-shot search also compiles nothing the killed run compiled: it loads its
programs from the persistent compilation cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp

from jnas.runner.checkpoint import Checkpointer

SCRIPT = "kill_after_checkpoint.py"


def _untimed(record):
    """A JSON record without its timings (``*_s``, ``*_s_*``), which differ between runs."""
    if isinstance(record, dict):
        return {k: _untimed(v) for k, v in record.items() if not (k.endswith("_s") or "_s_" in k)}
    return record


def _jsonl(workdir: str, name: str) -> list[dict]:
    with open(os.path.join(workdir, name)) as f:
        return [_untimed(json.loads(line)) for line in f if line.strip()]


def _last_checkpoint(workdir: str):
    """``(step, state, meta)`` of the newest checkpoint, restored as saved (numpy arrays)."""
    ckpt = Checkpointer(workdir)
    step = ckpt.latest_step()
    args = ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore())
    restored = ckpt.manager.restore(step, args=args)
    ckpt.close()
    return step, jax.tree.map(np.asarray, restored["state"]), restored["meta"]


# A program that compiles in at least this long and that the resumed run did not find in
# the persistent compilation cache (which keeps programs of 1 s or more) means its cache key
# differs from the killed run's: a resume that recompiles what it ran before.
RECOMPILE_S = 3.0


def _kill_and_resume(
    repo_root,
    run_script,
    tmp_path,
    runner,
    config,
    kill,
    overrides,
    after_kill=None,
    compiles_nothing=False,
):
    """Kill at ``kill`` (a checkpoint step N, or ``"N+K"``: K history rows after it), resume.
    ``compiles_nothing``: the resumed run loads every costly program from the persistent
    compilation cache (for host loops whose programs do not depend on what they find).

    Returns ``(reference workdir, resumed workdir, resumed summary)``.
    """
    kill_at = int(str(kill).partition("+")[0])
    ref, workdir = str(tmp_path / "reference"), str(tmp_path / "killed")
    args = [runner, config, workdir, str(kill), json.dumps(overrides)]
    proc = subprocess.run(
        [sys.executable, os.path.join(repo_root, "tests", "scripts", SCRIPT), *args, ref],
        cwd=repo_root,
        env=dict(os.environ, PYTHONPATH=repo_root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert Checkpointer(workdir).latest_step() == kill_at
    if after_kill is not None:
        after_kill(workdir)
    out = run_script(SCRIPT, runner, config, workdir, "none", json.dumps(overrides))
    assert out["saved"] and min(out["saved"]) > kill_at, out["saved"]  # it resumed
    if compiles_nothing:
        assert not [w for w in out["cache_writes"] if w[1] >= RECOMPILE_S], out["cache_writes"]
    return ref, workdir, out["summary"]


def _same_checkpoints(ref: str, workdir: str) -> None:
    ref_step, ref_state, ref_meta = _last_checkpoint(ref)
    step, state, meta = _last_checkpoint(workdir)
    assert step == ref_step
    chex.assert_trees_all_equal(state, ref_state)
    assert meta == ref_meta


def test_retraining_resumes_bitwise(repo_root, run_script, tmp_path, fake_fmnist_dir):
    # eval_tiny: 2 epochs of 4 steps, checkpoints at steps 3, 4 (epoch end), 6 and 8; killed
    # mid-epoch 2, after the best checkpoint of epoch 1.
    overrides = {"data.data_dir": fake_fmnist_dir}
    ref, workdir, summary = _kill_and_resume(
        repo_root, run_script, tmp_path, "train", "eval_tiny", 6, overrides, compiles_nothing=True
    )
    with open(os.path.join(ref, "results.json")) as f:
        expected = _untimed(json.load(f))
    assert _untimed(summary) == expected and expected["steps"] == 8
    assert _jsonl(workdir, "metrics.jsonl") == _jsonl(ref, "metrics.jsonl")
    _same_checkpoints(ref, workdir)
    _same_checkpoints(os.path.join(ref, "best"), os.path.join(workdir, "best"))


def test_one_shot_search_resumes_bitwise(repo_root, run_script, tmp_path, fake_fmnist_dir):
    # darts_tiny: 2 epochs of 4 steps, checkpoints at steps 3, 4 (epoch end), 6 and 8; killed
    # mid-epoch 2, after epoch 1's genotype was written.
    overrides = {"data.data_dir": fake_fmnist_dir}
    ref, workdir, summary = _kill_and_resume(
        repo_root, run_script, tmp_path, "search", "darts_tiny", 6, overrides, compiles_nothing=True
    )
    with open(os.path.join(ref, "genotype.txt")) as f:
        genotype = f.read()
    assert summary["genotype"] == genotype.strip()
    for name in ("genotype.txt", "alpha.json"):
        with open(os.path.join(workdir, name)) as f:
            assert f.read() == open(os.path.join(ref, name)).read(), name
    assert _jsonl(workdir, "metrics.jsonl") == _jsonl(ref, "metrics.jsonl")
    assert _jsonl(workdir, "genotypes.jsonl") == _jsonl(ref, "genotypes.jsonl")
    _same_checkpoints(ref, workdir)


def test_discrete_search_resumes_bitwise(repo_root, run_script, tmp_path, fake_fmnist_dir):
    # nasrl_tiny, 2 rounds of 3 children, a checkpoint per round: killed after round 1's
    # checkpoint, once the first child of round 2 was written to the history. The rerun
    # takes that child from the history (a child trained again would add a row).
    overrides = {"data.data_dir": fake_fmnist_dir, "search.rounds": 2}

    def killed_mid_round(workdir):
        rows = [r for r in _jsonl(workdir, "history.jsonl") if "header" not in r]
        assert [r["round"] for r in rows][-1] == 1, rows

    ref, workdir, summary = _kill_and_resume(
        repo_root, run_script, tmp_path, "search", "nasrl_tiny", "1+1", overrides, killed_mid_round
    )
    with open(os.path.join(ref, "summary.json")) as f:
        expected = _untimed(json.load(f))
    assert _untimed(summary) == expected and expected["rounds"] == 2
    assert _jsonl(workdir, "history.jsonl") == _jsonl(ref, "history.jsonl")
    assert _jsonl(workdir, "metrics.jsonl") == _jsonl(ref, "metrics.jsonl")
    _same_checkpoints(ref, workdir)
