"""P-DARTS: pruning and the skip limit against a port of the official code, the schedules,
the stage list, bad input, and a three-stage CPU search killed in stage 2 and resumed."""

import copy
import json
import os
import signal
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
from search_helpers import (
    NUM_EDGES,
    SMALL_OPS,
    TINY,
    assert_same_results,
    resume_snapshot,
    search_with_snapshot,
    tiny_config,
)

from jnas.ops.primitives import DARTS_PRIMITIVES
from jnas.runner import search as search_lib
from jnas.spaces.darts import DartsSpace
from jnas.strategies import pdarts

# ---------------------------------------------------------------- pruning


def test_prune_keeps_the_top_ops_by_weight():
    rng = np.random.default_rng(0)
    w = rng.random((14, 8))
    ops = [DARTS_PRIMITIVES] * 14
    kept = pdarts.prune(w, ops, 5)
    for e in range(14):
        top = {DARTS_PRIMITIVES[i] for i in np.argsort(-w[e])[:5]}
        assert set(kept[e]) == top
        assert kept[e] == [op for op in DARTS_PRIMITIVES if op in top]  # original order
    # Ties: the official get_min_k drops the lower index first.
    assert pdarts.prune(np.array([[0.1, 0.1, 0.3, 0.1]]), [("a", "b", "c", "d")], 2) == [["c", "d"]]


def test_expand_weights_puts_zeros_on_dropped_ops():
    w = np.array([[0.2, 0.3, 0.5]])
    full = pdarts.expand_weights(w, [("skip_connect", "sep_conv_3x3", "none")], DARTS_PRIMITIVES)
    assert full.shape == (1, 8)
    assert full[0, 3] == 0.2 and full[0, 4] == 0.3 and full[0, 0] == 0.5 and full.sum() == 1.0


# ---------------------------------------------------------------- the skip limit


def _official_final_genotype(probs, switches, max_sk):
    """A port of the official ``train_search.py`` end of the last stage.

    ``probs``: [14, n] softmax over each edge's active ops; ``switches``: [14][8] booleans
    (which of the 8 ops are active, ``switches_normal_2``). Returns the normal cell's
    ``(op, input)`` set per node.
    """
    probs = probs.copy()
    for i in range(14):
        if switches[i][0]:
            probs[i][0] = 0  # remove all Zero operations

    def keep_1_on(probs):
        sw = copy.deepcopy(switches)
        for i in range(14):
            idxs = [j for j in range(8) if sw[i][j]]
            w = probs[i].copy()
            drop = []
            k = len(idxs) - 1
            if 0 in idxs:
                w, drop, k = w[1:], [0], k - 1
            for _ in range(k):
                idx = int(np.argmin(w))
                w[idx] = 1
                drop.append(idx + 1 if 0 in idxs else idx)
            for idx in drop:
                sw[i][idxs[idx]] = False
        return sw

    def keep_2_branches(sw, probs):
        final = [max(probs[i]) for i in range(14)]
        keep, n, start = [0, 1], 3, 2
        for _ in range(3):
            tb = final[start : start + n]
            edge = sorted(range(n), key=lambda x: tb[x])
            keep += [edge[-1] + start, edge[-2] + start]
            start, n = start + n, n + 1
        return [row if i in keep else [False] * 8 for i, row in enumerate(sw)]

    def n_skip(sw):
        return sum(row[3] for row in sw)

    sw = keep_2_branches(keep_1_on(probs), probs)
    while n_skip(sw) > max_sk:  # delete_min_sk_prob
        sk_prob = [1.0] * 14
        pos = {}
        for i in range(14):
            if sw[i][3]:
                pos[i] = sum(switches[i][:3])
                sk_prob[i] = probs[i][pos[i]]
        d = int(np.argmin(sk_prob))
        probs[d][pos[d]] = 0.0
        sw = keep_2_branches(keep_1_on(probs), probs)
    gene, start, n = [], 0, 2
    for _ in range(4):
        node = set()
        for j in range(start, start + n):
            node |= {(DARTS_PRIMITIVES[k], j - start) for k in range(8) if sw[j][k]}
        gene.append(node)
        start, n = start + n, n + 1
    return gene


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("max_skips", [0, 2])
def test_skip_limit_matches_the_official_refinement(seed, max_skips):
    rng = np.random.default_rng(seed)
    # Last-stage candidates: 3 of the 8 ops per edge, skip_connect favoured, "none" sometimes.
    edge_ops, switches = [], []
    for _ in range(14):
        others = [o for o in DARTS_PRIMITIVES if o != "skip_connect"]
        ops = {"skip_connect", *rng.choice(others, 2, replace=False)}
        edge_ops.append(tuple(o for o in DARTS_PRIMITIVES if o in ops))
        switches.append([o in ops for o in DARTS_PRIMITIVES])
    logits = rng.normal(size=(14, 3))
    for e, ops in enumerate(edge_ops):
        logits[e, ops.index("skip_connect")] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    space = DartsSpace()
    full = {
        "normal": pdarts.expand_weights(probs, edge_ops, DARTS_PRIMITIVES),
        "reduce": pdarts.expand_weights(probs, edge_ops, DARTS_PRIMITIVES),
    }
    genotype = pdarts.limit_skips(space, full, max_skips)
    got = [set(genotype.normal[2 * j : 2 * j + 2]) for j in range(4)]
    assert got == _official_final_genotype(probs, switches, max_skips)
    assert sum(op == "skip_connect" for op, _ in genotype.normal) <= max_skips
    assert genotype.reduce == space.derive(full).reduce  # reduce cell untouched


# ---------------------------------------------------------------- schedules and stages


def test_skip_dropout_schedule_follows_the_official_code():
    p = pdarts.skip_dropout_rate(0.4, epochs=25, warmup_epochs=10)
    np.testing.assert_allclose(float(p(0)), 0.4 * 24 / 25, rtol=1e-6)
    np.testing.assert_allclose(float(p(9)), 0.4 * 15 / 25, rtol=1e-6)
    np.testing.assert_allclose(float(p(10)), 0.4, rtol=1e-6)
    np.testing.assert_allclose(float(p(15)), 0.4 * np.exp(-1.0), rtol=1e-6)


def test_stages_grow_deeper_and_carry_the_survivors():
    from experiments.configs import pdarts_cifar10

    stages = pdarts.stages(pdarts_cifar10.get_config())
    assert [c.pdarts.stage for c in stages] == [0, 1, 2]
    first = pdarts.build(stages[0], num_classes=10, steps_per_epoch=10)
    assert first.model.layers == 5 and first.model.primitives == DARTS_PRIMITIVES
    assert first.keep_next == 5 and first.arch_start_step == 100
    alpha = jax.device_get(first.init_alpha(jax.random.PRNGKey(0)))
    carry = pdarts.transfer(first, types.SimpleNamespace(alpha=alpha))
    json.dumps(carry)  # checkpointed as JSON
    assert all(len(ops) == 5 for t in ("normal", "reduce") for ops in carry[t])
    second = pdarts.build(stages[1], num_classes=10, steps_per_epoch=10, carry=carry)
    assert second.model.layers == 11 and second.keep_next == 3
    assert second.model.primitives["normal"] == tuple(tuple(o) for o in carry["normal"])
    assert second.init_alpha(jax.random.PRNGKey(0))["normal"].shape == (14, 5)
    third = pdarts.build(
        stages[2],
        num_classes=10,
        steps_per_epoch=10,
        carry={t: [ops[:3] for ops in carry[t]] for t in carry},
    )
    assert third.model.layers == 17 and third.keep_next is None
    with pytest.raises(ValueError, match="needs the ops kept"):
        pdarts.build(stages[1], num_classes=10, steps_per_epoch=10)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"pdarts.num_ops": (8, 8, 3)}, "must shrink"),
        ({"pdarts.num_ops": (8, 5, 6)}, "must shrink"),
        ({"pdarts.num_ops": (8, 5, 1)}, "at least 2"),
        ({"pdarts.num_ops": (7, 5, 3)}, "start with all 8"),
        ({"pdarts.skip_dropout": (0.1, 0.4)}, "one entry per stage"),
        ({"pdarts.skip_dropout": (0.1, 0.4, 1.0)}, r"in \[0, 1\)"),
    ],
)
def test_bad_stage_lists_are_rejected(overrides, match):
    from experiments.configs import pdarts_cifar10

    config = pdarts_cifar10.get_config()
    for k, v in overrides.items():
        config.pdarts[k.split(".")[1]] = v
    with pytest.raises(ValueError, match=match):
        pdarts.stages(config)


def test_search_rejects_non_shrinking_stages_before_loading_anything(tmp_path):
    config = tiny_config("pdarts_fashion_mnist", "/nonexistent", {"pdarts.num_ops": (4, 4, 2)})
    with pytest.raises(ValueError, match="must shrink"):
        search_lib.search(config, str(tmp_path))


# ---------------------------------------------------------------- end to end

STAGES = {
    "pdarts.num_ops": (4, 3, 2),
    "pdarts.add_layers": (0, 0, 1),
    "search.arch_start_epoch": 1,
    "eval_every_epochs": 6,  # one validation pass, at the end (one eval step compiled)
}


SNAPSHOT_STEP = 15  # stage 2 runs steps 9..16: mid epoch 4, its architecture epoch


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_fmnist_dir):
    workdir = str(tmp_path_factory.mktemp("pdarts"))
    snapshot = str(tmp_path_factory.mktemp("pdarts_snapshot") / "w")
    config = tiny_config("pdarts_fashion_mnist", fake_fmnist_dir, STAGES)
    summary = search_with_snapshot(config, workdir, snapshot, at_step=SNAPSHOT_STEP)
    return workdir, summary, snapshot


@pytest.mark.slow
def test_three_stages_in_one_run(finished_run):
    workdir, summary, _ = finished_run
    assert summary["steps"] == 24  # 3 stages x 2 epochs x 4 steps
    stages = json.load(open(os.path.join(workdir, "stages.json")))
    assert [len(stages["1"]["normal"][0]), len(stages["2"]["normal"][0])] == [3, 2]
    for e in range(NUM_EDGES):  # stage 3's candidates are among stage 2's
        assert set(stages["2"]["normal"][e]) <= set(stages["1"]["normal"][e])
    alpha = np.asarray(json.load(open(os.path.join(workdir, "alpha.json")))["normal"])
    assert alpha.shape == (NUM_EDGES, len(SMALL_OPS)) and np.all((alpha > 0).sum(-1) == 2)
    genotype = open(os.path.join(workdir, "genotype.txt")).read()
    assert genotype.count("skip_connect") - genotype.split("reduce=")[1].count("skip_connect") <= 2
    epochs = [json.loads(x)["epoch"] for x in open(os.path.join(workdir, "genotypes.jsonl"))]
    assert epochs == [1, 2, 3, 4, 5, 6]
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    # Each stage: a weights-only epoch, then one with architecture updates.
    grad_alpha = [r["grad_norm_alpha"] for r in records if r["kind"] == "epoch"]
    assert [g > 0 for g in grad_alpha] == [False, True] * 3


@pytest.mark.slow
def test_resume_after_a_kill_in_stage_2(finished_run, fake_fmnist_dir, capsys):
    ref_dir, _, snapshot = finished_run
    assert list(json.load(open(os.path.join(snapshot, "stages.json")))) == ["1"]
    config = tiny_config("pdarts_fashion_mnist", fake_fmnist_dir, STAGES)
    assert resume_snapshot(config, snapshot, capsys) == SNAPSHOT_STEP
    assert_same_results(snapshot, ref_dir)


@pytest.mark.slow
def test_resume_after_sigkill_in_stage_2(tmp_path, repo_root, fake_fmnist_dir, finished_run):
    """SIGKILLed right after the checkpoint of step 9 (stage 2 runs steps 9..16), the
    rerun resumes in stage 2 and ends as the uninterrupted run."""
    ref_dir, _, _ = finished_run
    workdir = str(tmp_path / "killed")
    overrides = json.dumps({**TINY, **STAGES, "data.data_dir": fake_fmnist_dir})
    args = ["search", "pdarts_fashion_mnist", workdir, "9", overrides]
    script = os.path.join(repo_root, "tests", "scripts", "kill_after_checkpoint.py")
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=repo_root,
        env=dict(os.environ, PYTHONPATH=repo_root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not os.path.exists(os.path.join(workdir, "genotype.txt"))
    rerun = subprocess.run(
        [sys.executable, script, *args[:3], "none", overrides],
        cwd=repo_root,
        env=dict(os.environ, PYTHONPATH=repo_root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    saved = json.loads(rerun.stdout.split("RESULT", 1)[1])["saved"]
    assert saved and 9 < min(saved) <= 16, saved  # it resumed in stage 2
    assert_same_results(workdir, ref_dir, exact_metrics=False)


def _last_stage(edge_ops):
    from experiments.configs import pdarts_cifar10

    stages = pdarts.stages(pdarts_cifar10.get_config())
    carry = {t: [list(ops) for ops in edge_ops] for t in ("normal", "reduce")}
    return pdarts.build(stages[2], num_classes=10, steps_per_epoch=10, carry=carry)


def test_derivation_picks_only_an_edges_own_ops_when_they_tie():
    """'none' leads every edge by 200: in float32 the other two ops' weights are both 0,
    as are those of the ops pruned from the edge. The rule picks among the edge's own ops:
    the two tie, the lower index wins (avg_pool_3x3), never a pruned op (max_pool_3x3)."""
    ops = ("none", "avg_pool_3x3", "dil_conv_5x5")
    searcher = _last_stage([ops] * 14)
    a = np.zeros((14, 3))
    a[:, 0] = 200.0
    genotype = searcher.derive_fn({"normal": a, "reduce": a})
    expected = tuple(("avg_pool_3x3", i) for _ in range(4) for i in (0, 1))
    assert genotype.normal == expected and genotype.reduce == expected


@pytest.mark.parametrize("seed", range(10))
def test_derivation_matches_the_rule_with_extreme_leads(seed):
    """Random 3-op candidate sets, one op of each edge ahead by 50 to 500; the rule over each
    edge's own ops, on weights computed with 300 digits (mpmath) and compared by their
    logarithms rounded to float64 (weights float64 cannot tell apart tie)."""
    import mpmath

    mpmath.mp.dps = 300
    rng = np.random.default_rng(seed)
    edge_ops = [
        tuple(o for o in DARTS_PRIMITIVES if o in set(rng.choice(DARTS_PRIMITIVES, 3, False)))
        for _ in range(14)
    ]
    edge_ops = [ops if len(ops) == 3 else DARTS_PRIMITIVES[1:4] for ops in edge_ops]
    if not any("skip_connect" in ops for ops in edge_ops):
        edge_ops[0] = ("skip_connect", "sep_conv_3x3", "dil_conv_3x3")
    a = rng.normal(size=(14, 3))
    a[np.arange(14), rng.integers(0, 3, 14)] += rng.uniform(50, 500, 14)
    searcher = _last_stage(edge_ops)
    genotype = searcher.derive_fn({"normal": a, "reduce": a})

    def weight(e, op):
        e_row = [mpmath.exp(mpmath.mpf(float(v))) for v in a[e]]
        return float(mpmath.log(e_row[edge_ops[e].index(op)] / mpmath.fsum(e_row)))

    expected, start = [], 0
    for j in range(4):
        n_in = j + 2
        best = {}
        for i in range(n_in):
            own = [o for o in edge_ops[start + i] if o != "none"]
            top = own[0]
            for o in own[1:]:
                if weight(start + i, o) > weight(start + i, top):
                    top = o
            best[i] = (weight(start + i, top), top)
        for i in sorted(range(n_in), key=lambda i: -best[i][0])[:2]:
            expected.append((best[i][1], i))
        start += n_in
    assert genotype.reduce == tuple(expected)
    if sum(op == "skip_connect" for op, _ in expected) <= 2:  # no skip limit at work
        assert genotype.normal == tuple(expected)
    assert sum(op == "skip_connect" for op, _ in genotype.normal) <= 2
    for k, (op, i) in enumerate(genotype.normal):
        edge = pdarts.DartsSpace().edges.index((i, k // 2))
        assert op in edge_ops[edge]  # only the edge's own ops
