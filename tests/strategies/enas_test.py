"""ENAS (jnas.strategies.enas, jnas.runner.enas) against references: the controller's
log-probability with ENAS's logit transforms computed by hand (a numpy LSTM), the skip
penalty, the sequential baseline and the SGDR schedule by hand, one compiled step for every
architecture, the search end to end on a toy shared-weight space (a kill resumes to the
same result), and config errors before anything compiles."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import ClassVar

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnas.config import with_overrides
from jnas.errors import ConfigError
from jnas.runner import run_search
from jnas.spaces.base import SPACES, SharedWeightSpace
from jnas.spaces.discrete import Anchor, Categorical, DecisionSpec
from jnas.strategies import controller, enas, reinforce

# -- a toy shared-weight space: L layers of one of three ops on 16 pooled features, each
# -- with skip inputs chosen by an anchor (a macro space in miniature) -------------------

TOY_OPS = ("relu_dense", "tanh_dense", "identity")


def _toy_forward(params, x, arch, num_layers: int):
    """The child ``arch`` (traced) with the shared ``params``: ``lax.switch`` on each op."""
    h = x @ params["stem"]
    outs, pos = [], 0
    for i in range(num_layers):
        op, bits = arch[pos], arch[pos + 1 : pos + 1 + i]
        pos += 1 + i
        inp = h if i == 0 else outs[-1]
        for j in range(i):
            inp = inp + bits[j].astype(inp.dtype) * outs[j]
        k = params[f"L{i}"]
        h_i = jax.lax.switch(
            op,
            [
                lambda v, k=k: jax.nn.relu(v @ k[0]),
                lambda v, k=k: jnp.tanh(v @ k[1]),
                lambda v, k=k: v,
            ],
            inp,
        )
        outs.append(h_i)
    return outs[-1] @ params["head"]


class ToySupergraph(nn.Module):
    num_classes: int
    num_layers: int = 2
    width: int = 8
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, arch, train: bool = True):
        x = nn.avg_pool(x, (7, 7), strides=(7, 7)).reshape(x.shape[0], -1)
        x = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, name="bn")(x)
        init = nn.initializers.lecun_normal()
        params = {
            "stem": self.param("stem", init, (x.shape[-1], self.width)),
            "head": self.param("head", init, (self.width, self.num_classes)),
        }
        for i in range(self.num_layers):
            params[f"L{i}"] = self.param(f"L{i}", init, (2, self.width, self.width))
        return _toy_forward(params, x, jnp.asarray(arch, jnp.int32), self.num_layers)


@SPACES.register("enas_toy")
@dataclasses.dataclass(frozen=True)
class ToySpace(SharedWeightSpace):
    num_layers: int = 2
    name: ClassVar[str] = "enas_toy"

    @property
    def spec(self):
        ds = []
        for i in range(self.num_layers):
            ds += [Categorical(f"L{i}/op", TOY_OPS), Anchor(f"L{i}/skip", i)]
        return DecisionSpec(tuple(ds))

    def encode(self, obj):
        return np.asarray(obj, np.int32)

    def decode(self, arch):
        return tuple(int(a) for a in self.spec.validate(arch))

    def to_text(self, arch):
        return " ".join(str(a) for a in self.decode(arch))

    def parse(self, text):
        return self.spec.validate([int(t) for t in text.split()])

    def network(self, arch, *, num_classes, fidelity=None):
        raise NotImplementedError  # not used by the search

    def supergraph(self, *, num_classes, bn_axis_name=None):
        return ToySupergraph(num_classes, self.num_layers, bn_axis_name=bn_axis_name)


def toy_config(data_dir: str, **overrides):
    from experiments.configs import enas_tiny

    config = with_overrides(
        enas_tiny.get_config(),
        {
            "data.data_dir": data_dir,
            "space": {"name": "enas_toy", "num_layers": 3},
            "controller.symmetric_anchors": True,
            "controller.skip_weight": 0.8,
            "controller.tanh_constant": 1.5,
            "controller.temperature": 5.0,
            **overrides,
        },
    )
    return config


# -- the controller's log-probability by hand ----------------------------------------------


def _np_lstm(p, c, h, x):
    """flax's OptimizedLSTMCell in numpy: gates i, f, g, o."""
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    gate = lambda g: x @ p[f"i{g}"]["kernel"] + h @ p[f"h{g}"]["kernel"] + p[f"h{g}"]["bias"]  # noqa: E731
    i, f, g, o = sig(gate("i")), sig(gate("f")), np.tanh(gate("g")), sig(gate("o"))
    c = f * c + i * g
    return c, o * np.tanh(c)


def _hand_log_prob(params, spec, arch, t: controller.LogitTransform) -> float:
    """log P(arch) of the controller with ENAS's transforms, step by step in numpy."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    hsize = p["start"].shape[-1]
    c, h, x = np.zeros((1, hsize)), np.zeros((1, hsize)), p["start"]
    anchors, logp, pos, cat = [], 0.0, 0, 0

    def squash(z, const):
        if t.temperature is not None:
            z = z / t.temperature
        return const * np.tanh(z) if t.tanh_constant is not None else z

    for d, is_op in zip(spec.decisions, t.op_decisions, strict=True):
        c, h = _np_lstm(p["cell"], c, h, x)
        if isinstance(d, Categorical):
            const = (t.tanh_constant or 0.0) / (t.op_tanh_reduce if is_op else 1.0)
            z = squash(h[0] @ p["head_kernel"][cat] + p["head_bias"][cat], const)[: d.num_choices]
            a = int(arch[pos])
            logp += z[a] - np.log(np.sum(np.exp(z)))
            x = p["embed"][cat, a][None]
            cat, pos = cat + 1, pos + 1
            continue
        bits = np.asarray(arch[pos : pos + d.num_sources], np.float64)
        for j in range(d.num_sources):
            q = np.tanh(anchors[j] @ p["w_prev"] + h[0] @ p["w_curr"]) @ p["v"]
            g = squash(q, t.tanh_constant or 0.0)
            row = np.array([-g, g]) if t.symmetric_anchors else np.array([0.0, g])
            logp += row[int(bits[j])] - np.log(np.sum(np.exp(row)))
        if d.num_sources:
            chosen = np.stack(anchors)[: d.num_sources]
            x = (bits @ chosen)[None] / (1.0 + bits.sum())
        else:
            x = p["start"]
        anchors.append(h[0])
        pos += d.num_sources
    return logp


MIXED = DecisionSpec(
    (
        Categorical("L0/op", ("a", "b", "c")),
        Anchor("L0/skip", 0),
        Categorical("L1/input", (0, 1)),
        Categorical("L1/op", ("a", "b", "c")),
        Anchor("L1/skip", 1),
        Categorical("L2/op", ("a", "b", "c")),
        Anchor("L2/skip", 2),
    )
)


@pytest.mark.parametrize(
    "temperature, tanh_constant, reduce, symmetric",
    [(5.0, 1.5, 2.5, True), pytest.param(2.0, 1.1, 2.5, False, marks=pytest.mark.slow)],
)
def test_log_prob_with_enas_transforms_equals_hand_computation(
    temperature, tanh_constant, reduce, symmetric
):
    t = controller.LogitTransform(
        temperature=temperature,
        tanh_constant=tanh_constant,
        op_tanh_reduce=reduce,
        op_decisions=enas.op_decisions(MIXED),
        symmetric_anchors=symmetric,
    )
    assert t.op_decisions == (True, False, False, True, False, True, False)
    params = controller.init(jax.random.key(0), MIXED, hidden_size=6)
    # larger weights than the init's, so that the transforms matter
    params = jax.tree.map(lambda a: 8.0 * a, params)
    for seed in range(3):
        arch, logp, _ = controller.sample(params, jax.random.key(seed), MIXED, transform=t)
        want = _hand_log_prob(params, MIXED, np.asarray(arch), t)
        np.testing.assert_allclose(float(logp), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(
            float(controller.log_prob(params, arch, MIXED, transform=t)), want, rtol=1e-5, atol=1e-5
        )


def test_identity_transform_is_the_default_controller():
    params = controller.init(jax.random.key(1), MIXED, hidden_size=6)
    plain = controller.sample(params, jax.random.key(2), MIXED)
    same = controller.sample(
        params, jax.random.key(2), MIXED, transform=controller.LogitTransform()
    )
    chex.assert_trees_all_close(plain, same)


@pytest.mark.parametrize(
    "bad", [{"temperature": 0.0}, {"tanh_constant": -1.0}, {"op_tanh_reduce": 0}]
)
def test_logit_transform_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        controller.LogitTransform(**bad)


def test_skip_penalty_and_rate_by_hand():
    rows = np.zeros((MIXED.length, 3), np.float32)
    rows[:, 1] = np.arange(MIXED.length) / 4.0
    target = 0.4
    # anchor bits: position 3 (L1, one bit) and positions 5, 6 (L2, two bits)
    kl = lambda x: (  # noqa: E731
        (p := 1 / (1 + math.exp(-x))) * math.log(p / target)
        + (1 - p) * math.log((1 - p) / (1 - target))
    )
    want = (kl(rows[3, 1]) + kl(rows[5, 1]) + kl(rows[6, 1])) / 2
    got = controller.skip_penalty(jnp.asarray(rows), MIXED, target)
    np.testing.assert_allclose(float(got), want, rtol=1e-6)
    arch = np.array([0, 1, 2, 1, 0, 0, 1])
    assert float(controller.skip_rate(arch, MIXED)) == pytest.approx(2 / 3)


def test_sequential_baseline_and_entropy_reward_by_hand():
    rewards = np.array([0.5, 0.1, 0.9], np.float32)
    each, last = reinforce.sequential_baseline(0.2, rewards, 0.9)
    b, want = 0.2, []
    for r in rewards:  # tf.assign_sub(baseline, (1 - bl_dec) * (baseline - reward))
        b = b - 0.1 * (b - r)
        want.append(b)
    np.testing.assert_allclose(np.asarray(each), want, rtol=1e-6)
    assert float(last) == pytest.approx(want[-1])
    shaped = reinforce.entropy_in_reward(rewards, np.array([1.0, 2.0, 3.0]), 0.1)
    np.testing.assert_allclose(np.asarray(shaped), rewards + [0.1, 0.2, 0.3], rtol=1e-6)


@pytest.mark.slow
def test_policy_loss_with_skip_penalty_equals_its_terms():
    t = controller.LogitTransform(tanh_constant=1.5, symmetric_anchors=True)
    params = controller.init(jax.random.key(3), MIXED, hidden_size=6)
    archs = jnp.stack(
        [controller.sample(params, jax.random.key(k), MIXED, transform=t)[0] for k in range(3)]
    )
    rewards, baselines = jnp.array([0.3, 0.6, 0.2]), jnp.array([0.4, 0.4, 0.5])
    loss_fn = jax.jit(
        reinforce.policy_loss, static_argnames=("spec", "transform", "skip_weight", "skip_target")
    )
    loss, ent = loss_fn(
        params, archs, rewards, baselines, MIXED, 0.0, transform=t, skip_weight=0.8, skip_target=0.4
    )
    terms = [controller.score(params, a, MIXED, transform=t) for a in archs]
    want = -np.mean([(r - b) * float(s[0]) for r, b, s in zip(rewards, baselines, terms)])
    want += 0.8 * np.mean([float(controller.skip_penalty(s[2], MIXED, 0.4)) for s in terms])
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(ent), np.mean([float(s[1]) for s in terms]), rtol=1e-5)


def test_cosine_restarts_is_the_official_schedule():
    lr_max, lr_min = 0.05, 0.0005
    sched = enas.cosine_restarts(lr_max, lr_min, 2, 2, 14)
    last_reset, t_i = 0, 2
    for epoch in range(14):  # src/utils.py get_train_ops, lr_cosine
        t_cur = epoch - last_reset
        if t_cur >= t_i:
            last_reset, t_i = epoch, t_i * 2
            t_cur = 0
        want = lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(t_cur / t_i * math.pi))
        assert float(sched(epoch)) == pytest.approx(want, rel=1e-5), epoch


# -- the search object ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_search(fake_fmnist_dir):
    config = toy_config(fake_fmnist_dir)
    searcher = enas.build(config, num_classes=10, steps_per_epoch=3)
    # the shapes of the search's batches (enas_tiny: 16 Fashion-MNIST images)
    images = jnp.asarray(np.random.default_rng(0).normal(size=(16, 28, 28, 1)), jnp.float32)
    batch = {"image": images, "label": jnp.arange(16, dtype=jnp.int32) % 10}
    state = searcher.init(jax.random.PRNGKey(0), images[:2])
    return searcher, state, batch


def test_shared_step_compiles_once_for_every_architecture(toy_search):
    searcher, state, batch = toy_search
    traces = []

    def step(state, arch, batch):
        traces.append(1)
        return searcher.train_step(state, arch, batch)

    step = jax.jit(step)
    archs = [searcher.sample(state.controller.params, jax.random.key(k)) for k in range(4)]
    assert len({tuple(np.asarray(a)) for a in archs}) > 1
    for arch in archs:
        new, m = step(state, arch, batch)
        assert np.isfinite(float(m["train_loss"]))
    assert len(traces) == 1


def test_shared_params_one_op_updates_only_its_weights(toy_search):
    # Two children that pick op 0 in layer 0 and identities elsewhere update the same
    # layer-0 weights; the op they do not use keeps its weights.
    searcher, state, batch = toy_search
    arch = jnp.asarray([0, 2, 0, 2, 0, 0], jnp.int32)  # L0 relu_dense; L1, L2 identity
    new, _ = jax.jit(searcher.train_step)(state, arch, batch)
    old_k, new_k = np.asarray(state.params["L0"]), np.asarray(new.params["L0"])
    assert not np.allclose(old_k[0], new_k[0])
    # the unused op's kernel moves by weight decay only: 2 * l2 * lr * w with momentum 0.9
    lr, l2 = searcher.lr_fn(0), 1e-4
    np.testing.assert_allclose(new_k[1], old_k[1] * (1 - lr * 2 * l2 * 1.9), rtol=1e-5)


# 16 s cold (the controller step's own program); the default suite checks its parts by hand:
# the log-probability, the skip penalty, the sequential baseline and the entropy reward.
@pytest.mark.slow
def test_controller_step_rewards_and_update(toy_search):
    searcher, state, batch = toy_search
    a = searcher.num_aggregate
    stack = {
        "image": jnp.stack([batch["image"]] * a, 1),
        "label": jnp.stack([batch["label"]] * a, 1),
    }
    # compiled as the host loop compiles it (the persistent cache then serves the search of
    # test_search_end_to_end), on a copy of the state (the step donates it)
    from jnas.runner import use_runtime
    from jnas.runner.parallel import Parallel

    with use_runtime(toy_config(".")) as (_, runtime):
        step = Parallel("none", xla_options=runtime.xla_options).compile(searcher.controller_step)
    new, m, archs, accs = step(jax.tree.map(jnp.copy, state), stack)
    assert archs.shape == (a, searcher.spec.length) and accs.shape == (a,)
    sums_fn = jax.jit(searcher.accuracy_sums)
    for arch, acc in zip(archs, accs):  # the reward: the child's accuracy on its minibatch
        sums = sums_fn(state, arch, batch)
        assert float(acc) == pytest.approx(float(sums["correct"] / sums["count"]))
    # ENAS's reward: accuracy + beta * the sample's entropy; the baseline moves by each
    ents = [
        controller.score(
            state.controller.params, arch, searcher.spec, transform=searcher.transform
        )[1]
        for arch in archs
    ]
    rewards = np.asarray(accs) + searcher.entropy_weight * np.asarray(ents)
    assert float(m["reward"]) == pytest.approx(float(np.mean(rewards)), rel=1e-5)
    _, want = reinforce.sequential_baseline(
        state.controller.baseline, rewards, searcher.baseline_decay
    )
    assert float(new.controller.baseline) == pytest.approx(float(want), rel=1e-5)
    assert int(new.controller.num_updates) == 1 and int(new.controller.num_told) == a
    changed = jax.tree.map(
        lambda x, y: not np.array_equal(x, y), new.controller.params, state.controller.params
    )
    assert all(jax.tree.leaves(changed))
    chex.assert_trees_all_equal(new.params, state.params)  # the shared weights stay
    assert 0.0 <= float(m["skip_rate"]) <= 1.0


# -- config errors before anything compiles ---------------------------------------------------


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("controller.temperature", 0.0, "controller.temperature"),
        ("controller.tanh_constant", -1.5, "controller.tanh_constant"),
        ("controller.skip_target", 1.0, "controller.skip_target"),
        ("controller.baseline_decay", 1.0, "controller.baseline_decay"),
        ("controller.num_aggregate", 0, "controller.num_aggregate"),
        ("optim_w.T_mul", 0, "optim_w.T_mul"),
    ],
)
def test_bad_controller_settings_are_config_errors(tmp_path, fake_fmnist_dir, key, value, named):
    workdir = str(tmp_path / "w")
    config = toy_config(fake_fmnist_dir, **{key: value})
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        run_search(config, workdir)
    assert not os.path.exists(workdir)  # refused before the workdir was touched


def test_a_space_without_supergraph_is_a_config_error(tmp_path, fake_fmnist_dir):
    config = toy_config(fake_fmnist_dir, space={"name": "nasrl"})
    with pytest.raises(ConfigError, match="supergraph"):
        run_search(config, str(tmp_path / "w"))


# -- the host loop end to end ----------------------------------------------------------------


def _read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# The toy search through the host loop (14 s cold); tests/runner/enas_runner_test.py runs the
# real spaces (slow too).
@pytest.mark.slow
def test_search_end_to_end(tmp_path, fake_fmnist_dir):
    config = toy_config(fake_fmnist_dir)
    ref = str(tmp_path / "ref")
    summary = run_search(config, ref)
    # 2 epochs of 3 steps; 2 controller updates of 2 samples per epoch; 3 derivation samples
    rows = _read_jsonl(os.path.join(ref, "archs.jsonl"))
    phases = [r["kind"] for r in rows]
    assert phases.count("train") == 6 and phases.count("controller") == 8
    derived = [r for r in rows if r["kind"] == "derive"]
    assert len(derived) == 3
    best = max(derived, key=lambda r: r["acc"])
    assert summary["arch"] == best["arch"] and summary["arch_acc"] == best["acc"]
    with open(os.path.join(ref, "genotype.txt")) as f:
        assert f.read().strip() == summary["arch"]
    assert summary["controller_updates"] == 4
    records = _read_jsonl(os.path.join(ref, "metrics.jsonl"))
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    for key in ("controller_reward", "controller_entropy", "controller_baseline"):
        assert key in epochs[-1]
    assert 0.0 <= epochs[-1]["controller_skip_rate"] <= 1.0
    # the checkpoint holds the controller: its parameters, Adam's moments and the baseline
    from jnas.runner.checkpoint import Checkpointer

    ckpt = Checkpointer(ref)
    assert ckpt.latest_step() == 6
    ckpt.close()


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_same_result(tmp_path, fake_fmnist_dir, monkeypatch):
    from jnas.runner.checkpoint import Checkpointer

    config = toy_config(fake_fmnist_dir)
    ref = str(tmp_path / "ref")
    summary = run_search(config, ref)
    # a "kill" right after the checkpoint of step 4 (mid-epoch 2), then a rerun
    killed = str(tmp_path / "killed")
    save = Checkpointer.save

    class Killed(Exception):
        pass

    def save_then_die(self, step, state, meta=None):
        save(self, step, state, meta)
        if int(step) == 4:
            raise Killed

    monkeypatch.setattr(Checkpointer, "save", save_then_die)
    with pytest.raises(Killed):
        run_search(config, killed)
    monkeypatch.setattr(Checkpointer, "save", save)
    resumed = run_search(config, killed)
    drop = lambda d: {k: v for k, v in d.items() if not k.endswith("_s")}  # noqa: E731
    assert drop(resumed) == drop(summary)
    for name in ("archs.jsonl", "genotypes.jsonl", "derived.json"):
        with open(os.path.join(ref, name)) as a, open(os.path.join(killed, name)) as b:
            assert a.read() == b.read(), name
    strip = lambda rs: [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rs]  # noqa: E731
    assert strip(_read_jsonl(os.path.join(killed, "metrics.jsonl"))) == strip(
        _read_jsonl(os.path.join(ref, "metrics.jsonl"))
    )
