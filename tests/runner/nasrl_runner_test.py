"""End to end: NAS-RL with real child training (jnas.runner.discrete) on the tiny config.

History and reuse, bad rewards and bad histories, children on 8 devices,
a strategy object that is not registered, the fidelity of config.child.
"""

import dataclasses
import json
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from experiments.configs import nasrl_tiny
from jnas.config import with_overrides
from jnas.errors import WorkdirConfigError
from jnas.runner import discrete, run_search
from jnas.runner.checkpoint import IncompatibleCheckpointError
from jnas.runner.data import load_search_data
from jnas.runner.errors import NonFiniteLossError
from jnas.spaces import discrete as discrete_space
from jnas.spaces.base import Fidelity, make_space
from jnas.spaces.child import count_params
from jnas.spaces.nasrl import NasRLSpace
from jnas.strategies.base import DiscreteStrategy, NoParams


def _config(data_dir, **overrides):
    config = nasrl_tiny.get_config()
    config.data.data_dir = data_dir
    config.search.num_devices = 1  # the reference run: one device, children in order
    return with_overrides(config, overrides)


def _history(workdir):
    with open(os.path.join(workdir, discrete.HISTORY)) as f:
        lines = [json.loads(ln) for ln in f]
    return lines[0]["header"], lines[1:]


def _stable(rows, drop=("train_s", "device", "round_s")):
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


class _Recorder:
    """Replaces ``NasRLSpace.train_child`` by ``fn``, recording the text of every architecture
    trained (and the fidelity it was trained at)."""

    real = NasRLSpace.train_child

    def __init__(self, fn=None):
        self.fn, self.texts, self.fidelities = fn or _Recorder.real, [], []

    def install(self, monkeypatch):
        def train_child(space, arch, train, val, **kwargs):
            self.texts.append(space.to_text(arch))
            self.fidelities.append(kwargs.get("fidelity"))
            return self.fn(space, arch, train, val, **kwargs)

        monkeypatch.setattr(NasRLSpace, "train_child", train_child)
        return self


def _no_training(monkeypatch):
    _Recorder(lambda *a, **k: pytest.fail("trained")).install(monkeypatch)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_fmnist_dir):
    workdir = str(tmp_path_factory.mktemp("nasrl"))
    config = _config(fake_fmnist_dir)
    with pytest.MonkeyPatch.context() as mp:
        recorder = _Recorder().install(mp)
        summary = run_search(config, workdir)  # routed by config.strategy's kind
    return workdir, summary, recorder.texts


def test_history_summary_and_no_child_trained_twice(finished_run, fake_fmnist_dir):
    workdir, summary, trained = finished_run
    header, rows = _history(workdir)
    space = make_space(_config(fake_fmnist_dir).space)
    assert header["space"] == json.loads(json.dumps(space.options()))
    assert "width" not in header["child"]  # the default fidelity: headers as without one
    texts = [r["arch"] for r in rows]
    assert texts == trained  # one row per train_child call, in order
    assert len(set(texts)) == len(texts)  # none twice
    assert summary["num_asked"] == 9 and summary["num_trained"] == len(rows)
    assert summary["num_trained"] < summary["num_asked"]  # this seed meets some arch again
    n_val = len(load_search_data(_config(fake_fmnist_dir))[2][1])
    for r in rows:
        assert 0.0 <= r["reward"] <= 1.0
        assert r["reward"] * n_val == pytest.approx(round(r["reward"] * n_val))  # an accuracy
        assert r["params"] > 0 and r["device"] == 0
    best = max(rows, key=lambda r: r["reward"])
    assert (summary["best_arch"], summary["best_reward"]) == (best["arch"], best["reward"])
    assert open(os.path.join(workdir, "best_arch.txt")).read() == best["arch"] + "\n"
    assert json.load(open(os.path.join(workdir, "summary.json")))["best_arch"] == best["arch"]
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert sum(r["num_new"] for r in records) == len(rows)
    assert [r["best_reward"] for r in records] == sorted(r["best_reward"] for r in records)
    # REINFORCE's tell metrics: the baseline, the entropy of the policy sampled from.
    assert all(np.isfinite(r["baseline"]) and r["entropy"] > 0 for r in records)
    assert [r["num_updates"] for r in records] == [1, 2, 3]
    # The first batch's baseline is its mean reward (the EMA has no earlier reward).
    assert records[0]["baseline"] == pytest.approx(records[0]["reward_mean"], rel=1e-6)
    assert os.listdir(os.path.join(workdir, "tb"))
    assert json.load(open(os.path.join(workdir, "config.json")))["runtime"]


def test_a_reward_is_the_childs_accuracy_under_its_own_key(finished_run, fake_fmnist_dir):
    workdir, _, _ = finished_run
    config = _config(fake_fmnist_dir)
    space = make_space(config.space)
    _, train, val = load_search_data(config)
    header, rows = _history(workdir)
    row = rows[-1]
    reward = space.train_child(
        space.parse(row["arch"]),
        train,
        val,
        config=header["child"],
        key=discrete.child_key(config.seed, row["arch"]),
    )
    assert reward == row["reward"]


def test_rerun_of_a_finished_search_trains_nothing(finished_run, fake_fmnist_dir, monkeypatch):
    workdir, summary, _ = finished_run
    work = os.path.join(os.path.dirname(workdir), "rerun")
    shutil.copytree(workdir, work)
    _no_training(monkeypatch)
    again = run_search(_config(fake_fmnist_dir), work)
    assert _stable([again], ("search_wall_s",)) == _stable([summary], ("search_wall_s",))


def test_a_line_cut_short_is_dropped_and_a_lost_history_is_reported(
    finished_run, fake_fmnist_dir, monkeypatch
):
    workdir, summary, _ = finished_run
    _no_training(monkeypatch)
    work = os.path.join(os.path.dirname(workdir), "cut")
    shutil.copytree(workdir, work)
    path = os.path.join(work, discrete.HISTORY)
    intact = open(path).read()
    with open(path, "a") as f:
        f.write('{"round": 2, "index": 1, "arch": "3x')  # a kill while a row was written
    assert run_search(_config(fake_fmnist_dir), work)["best_arch"] == summary["best_arch"]
    assert open(path).read() == intact
    os.remove(path)
    with pytest.raises(IncompatibleCheckpointError, match="history was truncated or replaced"):
        run_search(_config(fake_fmnist_dir), work)
    assert not os.path.exists(path)


def test_nan_reward_names_the_child_and_keeps_the_history(tmp_path, fake_fmnist_dir, monkeypatch):
    config = _config(fake_fmnist_dir)
    rewards = iter([0.5, 0.25, float("nan")])
    nan_run = _Recorder(lambda *a, **k: next(rewards)).install(monkeypatch)
    workdir = str(tmp_path / "nan")
    with pytest.raises(discrete.NonFiniteRewardError) as err:
        run_search(config, workdir)
    assert isinstance(err.value, NonFiniteLossError)  # the one non-finite error of the runners
    assert repr(nan_run.texts[2]) in str(err.value) and "round 0, index 2" in str(err.value)
    _, rows = _history(workdir)
    assert [(r["arch"], r["reward"]) for r in rows] == list(zip(nan_run.texts[:2], [0.5, 0.25]))
    assert not os.path.isdir(os.path.join(workdir, "checkpoints")) or not [
        d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()
    ]
    # The rerun repeats round 0's asks and trains only the child that had no reward.
    rerun = _Recorder(lambda *a, **k: 0.125).install(monkeypatch)
    run_search(config, workdir)
    assert rerun.texts[0] == nan_run.texts[2]
    assert not set(rerun.texts) & set(nan_run.texts[:2])
    _, rows = _history(workdir)
    assert [r["reward"] for r in rows[:3]] == [0.5, 0.25, 0.125]


@pytest.mark.parametrize(
    "edit, error, message",
    [
        (lambda h, r: (h, [dict(r[0], arch="3x3/s1/f5; 1x1/s1/f4")]), "history", "num_filters = 5"),
        (lambda h, r: (h, [dict(r[0], arch="3x3 s1 f4; 1x1/s1/f4")]), "history", "cannot parse"),
        (lambda h, r: (h, [dict(r[0], reward=float("nan"))]), "history", "reward is nan"),
        (lambda h, r: (h, [r[0], r[0]]), "history", "already in the history"),
        (
            lambda h, r: ({**h, "space": {**h["space"], "num_layers": 3}}, r),
            "incompatible",
            "space.num_layers: 3 there, 2 here",
        ),
    ],
    ids=["op-not-in-space", "unparsable", "nan-reward", "duplicate", "other-space"],
)
def test_bad_history_is_named_and_left_intact(
    tmp_path, finished_run, fake_fmnist_dir, monkeypatch, edit, error, message
):
    header, rows = edit(*_history(finished_run[0]))
    workdir = str(tmp_path / "bad")
    os.makedirs(workdir)
    path = os.path.join(workdir, discrete.HISTORY)
    with open(path, "w") as f:
        f.writelines(json.dumps(x) + "\n" for x in [{"header": header}, *rows])
    before = open(path).read()
    _no_training(monkeypatch)
    kind = discrete.HistoryError if error == "history" else IncompatibleCheckpointError
    with pytest.raises(kind, match=message):
        run_search(_config(fake_fmnist_dir), workdir)
    assert open(path).read() == before


@pytest.mark.slow
def test_children_train_on_all_devices_with_the_same_rewards(
    tmp_path, run_script, fake_fmnist_dir, finished_run
):
    ref_dir, _, _ = finished_run
    workdir = str(tmp_path / "multi")
    result = run_script("nasrl_devices.py", fake_fmnist_dir, workdir, devices=8)
    assert result["devices"] == 8 and result["summary"]["devices"] == 8
    _, rows = _history(workdir)
    assert [r["device"] for r in rows] == [0, 1, 2]  # round-robin, in the order asked
    assert sorted(result["seen"]) == [0, 1, 2]  # where train_child's arrays really went
    assert result["threads"] == 3  # one worker thread per device
    # The same children with the same rewards as on one device, bit for bit.
    ref = [r for r in _history(ref_dir)[1] if r["round"] == 0]
    assert _stable(rows) == _stable(ref)


@struct.dataclass
class _InOrderState:
    next_code: jax.Array
    reward_sum: jax.Array


@dataclasses.dataclass(frozen=True)
class _InOrder(DiscreteStrategy):
    """A strategy nobody registered: asks the architectures of codes 0, 1, 2, ... in order."""

    spec: Any
    population_size: int = 1

    @property
    def default_params(self):
        return NoParams()

    def init(self, key, params=None):
        return _InOrderState(jnp.zeros((), jnp.int32), jnp.zeros((), jnp.float32))

    def ask(self, key, state, params=None):
        codes = state.next_code + jnp.arange(self.population_size)
        archs = jax.vmap(lambda c: discrete_space.from_code(self.spec, c))(codes)
        return archs, state.replace(next_code=state.next_code + self.population_size)

    def tell(self, state, archs, rewards, params=None):
        state = state.replace(reward_sum=state.reward_sum + jnp.sum(rewards))
        return state, {"reward_sum": state.reward_sum, "reward_mean": jnp.float32(-1.0)}


def _reward_of_text(space, arch, *args, **kwargs):
    return len(space.to_text(arch)) / 100.0


def test_an_unregistered_strategy_object_runs(tmp_path, fake_fmnist_dir, monkeypatch):
    recorder = _Recorder(_reward_of_text).install(monkeypatch)
    config = _config(fake_fmnist_dir, **{"search.rounds": 2})
    space = make_space(config.space)
    strategy = _InOrder(space.spec, population_size=3)
    summary = discrete.search(config, str(tmp_path), strategy=strategy)
    expected = [space.to_text(discrete_space.from_code(space.spec, c)) for c in range(6)]
    assert recorder.texts == expected  # asked in order, each trained once
    header, rows = _history(str(tmp_path))
    assert header["strategy"].endswith(":_InOrder") and summary["strategy"] == header["strategy"]
    records = [json.loads(x) for x in open(tmp_path / "metrics.jsonl")]
    sums = np.cumsum([len(t) / 100.0 for t in expected]).reshape(2, 3)[:, -1]
    np.testing.assert_allclose([r["reward_sum"] for r in records], sums, rtol=1e-6)
    # A metric named like one of the runner's keeps both: the strategy's is prefixed.
    assert [r["strategy/reward_mean"] for r in records] == [-1.0, -1.0]
    assert records[0]["reward_mean"] == pytest.approx(np.mean([len(t) / 100 for t in expected[:3]]))
    # A class is built for the population; an object of another population size is refused.
    summary = discrete.search(config, str(tmp_path / "cls"), strategy=_InOrder)
    assert summary["num_trained"] == 6
    with pytest.raises(ValueError, match="population_size = 2 must equal"):
        discrete.search(config, str(tmp_path / "bad"), strategy=_InOrder(space.spec, 2))


def test_the_child_fidelity_comes_from_config_child(tmp_path, fake_fmnist_dir, monkeypatch):
    recorder = _Recorder(_reward_of_text).install(monkeypatch)
    overrides = {"search.rounds": 1, "child.width": 0.5, "child.data_fraction": 0.25}
    config = _config(fake_fmnist_dir, **overrides)
    discrete.search(config, str(tmp_path))
    assert recorder.fidelities == [Fidelity(data_fraction=0.25, width=0.5)] * len(recorder.texts)
    header, rows = _history(str(tmp_path))
    assert header["child"]["width"] == 0.5 and header["child"]["data_fraction"] == 0.25
    space = make_space(config.space)
    for row in rows:  # parameters of the network trained: at half width (4 -> 2 filters)
        half = space.network(space.parse(row["arch"]), num_classes=10, fidelity=Fidelity(width=0.5))
        assert row["params"] == count_params(half, (28, 28, 1))
        assert [x.num_filters for x in half.arch.layers] == [2, 2]
    # The same workdir at full width is another run.
    full = _config(fake_fmnist_dir, **{"search.rounds": 1})
    with pytest.raises(WorkdirConfigError, match="child.width: 0.5 -> 1.0"):  # config.json's
        discrete.search(full, str(tmp_path))
    with pytest.raises(IncompatibleCheckpointError, match="child.width: 0.5 there"):  # past it
        discrete.search(full, str(tmp_path), allow_config_change=True)


def test_unknown_strategy_options_are_named(tmp_path, fake_fmnist_dir):
    config = _config(fake_fmnist_dir)
    config.reinforce.batch_size = 3
    with pytest.raises(ValueError, match="batch_size"):
        discrete.search(config, str(tmp_path))
