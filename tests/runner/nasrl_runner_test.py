"""End to end: NAS-RL with real child training (jnas.runner.discrete) on the tiny config.

History and reuse, resume after SIGKILL, bad rewards and bad histories, children on 8 devices.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments.configs import nasrl_tiny
from jnas.runner import discrete
from jnas.runner import search as search_lib
from jnas.runner.checkpoint import IncompatibleCheckpointError
from jnas.runner.search import load_search_data
from jnas.spaces import nasrl


def _config(data_dir, **overrides):
    config = nasrl_tiny.get_config()
    config.data.data_dir = data_dir
    config.search.num_devices = 1  # the reference run: one device, children in order
    for k, v in overrides.items():
        node = config
        *path, last = k.split(".")
        for p in path:
            node = node[p]
        node[last] = v
    return config


def _cli(workdir, data_dir, *extra):
    return [
        sys.executable,
        "-m",
        "experiments.search",
        "--config=experiments/configs/nasrl_tiny.py",
        f"--workdir={workdir}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]


def _history(workdir):
    with open(os.path.join(workdir, discrete.HISTORY)) as f:
        lines = [json.loads(ln) for ln in f]
    return lines[0]["header"], lines[1:]


def _stable(rows, drop=("train_s", "device", "round_s")):
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


class _Recorder:
    """Wraps a `train_child`, recording the text of every architecture it trains."""

    def __init__(self, space, fn):
        self.space, self.fn, self.texts = space, fn, []

    def __call__(self, arch, train, val, *, config, key):
        self.texts.append(self.space.to_text(self.space.encode(arch)))
        return self.fn(arch, train, val, config=config, key=key)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fake_fmnist_dir):
    workdir = str(tmp_path_factory.mktemp("nasrl"))
    config = _config(fake_fmnist_dir)
    recorder = _Recorder(discrete.make_space(config.space), nasrl.train_child)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nasrl, "train_child", recorder)
        summary = search_lib.search(config, workdir)  # routed by config.strategy
    return workdir, summary, recorder.texts


def test_history_summary_and_no_child_trained_twice(finished_run, fake_fmnist_dir):
    workdir, summary, trained = finished_run
    _, rows = _history(workdir)
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
    assert all(np.isfinite(r["baseline"]) and r["entropy"] > 0 for r in records)
    assert os.listdir(os.path.join(workdir, "tb"))


def test_a_reward_is_the_childs_accuracy_under_its_own_key(finished_run, fake_fmnist_dir):
    workdir, _, _ = finished_run
    config = _config(fake_fmnist_dir)
    space = discrete.make_space(config.space)
    _, train, val = load_search_data(config)
    header, rows = _history(workdir)
    row = rows[-1]
    reward = nasrl.train_child(
        space.decode(space.parse(row["arch"])),
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
    monkeypatch.setattr(nasrl, "train_child", lambda *a, **k: pytest.fail("trained again"))
    again = search_lib.search(_config(fake_fmnist_dir), work)
    assert _stable([again], ("search_wall_s",)) == _stable([summary], ("search_wall_s",))


def test_a_line_cut_short_is_dropped_and_a_lost_history_is_reported(
    finished_run, fake_fmnist_dir, monkeypatch
):
    workdir, summary, _ = finished_run
    monkeypatch.setattr(nasrl, "train_child", lambda *a, **k: pytest.fail("trained again"))
    work = os.path.join(os.path.dirname(workdir), "cut")
    shutil.copytree(workdir, work)
    path = os.path.join(work, discrete.HISTORY)
    intact = open(path).read()
    with open(path, "a") as f:
        f.write('{"round": 2, "index": 1, "arch": "3x')  # a kill while a row was written
    assert search_lib.search(_config(fake_fmnist_dir), work)["best_arch"] == summary["best_arch"]
    assert open(path).read() == intact
    os.remove(path)
    with pytest.raises(IncompatibleCheckpointError, match="history was truncated or replaced"):
        search_lib.search(_config(fake_fmnist_dir), work)
    assert not os.path.exists(path)


def test_resume_after_sigkill_matches_uninterrupted(
    tmp_path, repo_root, fake_fmnist_dir, finished_run
):
    ref_dir, ref_summary, _ = finished_run
    workdir = str(tmp_path / "killed")
    cmd = _cli(workdir, fake_fmnist_dir, "--config.search.num_devices=1")
    proc = subprocess.Popen(cmd, cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpt_dir = os.path.join(workdir, "checkpoints")
    history = os.path.join(workdir, discrete.HISTORY)

    def mid_round_1():  # round 0 checkpointed, a child of round 1 trained, round 1 not done
        names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
        steps = [int(d) for d in names if d.isdigit()]
        return steps == [1] and '"round": 1,' in open(history).read()

    killed = False
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if mid_round_1():
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.02)
    proc.wait()
    if not killed:
        pytest.skip(f"the run ended before it could be killed: {proc.stdout.read()[-2000:]}")
    assert not os.path.exists(os.path.join(workdir, "summary.json"))
    before_kill = open(history).read()
    out = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resuming from round" in out.stdout
    # The rows of before the kill are kept as they were and none is trained again (a child
    # trained twice would add a row): the history equals the uninterrupted run's.
    assert open(history).read().startswith(before_kill)
    assert before_kill.count('"round": 1,') >= 1
    assert _stable(_history(workdir)[1]) == _stable(_history(ref_dir)[1])
    summary = json.load(open(os.path.join(workdir, "summary.json")))
    for key in ("best_arch", "best_reward", "num_trained", "num_asked", "rounds"):
        assert summary[key] == ref_summary[key], key
    ref = [json.loads(x) for x in open(os.path.join(ref_dir, "metrics.jsonl"))]
    got = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    assert _stable(got) == _stable(ref)


def test_nan_reward_names_the_child_and_keeps_the_history(tmp_path, fake_fmnist_dir, monkeypatch):
    config = _config(fake_fmnist_dir)
    space = discrete.make_space(config.space)
    rewards = iter([0.5, 0.25, float("nan")])
    nan_run = _Recorder(space, lambda *a, **k: next(rewards))
    monkeypatch.setattr(nasrl, "train_child", nan_run)
    workdir = str(tmp_path / "nan")
    with pytest.raises(discrete.NonFiniteRewardError) as err:
        search_lib.search(config, workdir)
    assert repr(nan_run.texts[2]) in str(err.value) and "round 0, index 2" in str(err.value)
    _, rows = _history(workdir)
    assert [(r["arch"], r["reward"]) for r in rows] == list(zip(nan_run.texts[:2], [0.5, 0.25]))
    assert not os.path.isdir(os.path.join(workdir, "checkpoints")) or not [
        d for d in os.listdir(os.path.join(workdir, "checkpoints")) if d.isdigit()
    ]
    # The rerun repeats round 0's asks and trains only the child that had no reward.
    rerun = _Recorder(space, lambda *a, **k: 0.125)
    monkeypatch.setattr(nasrl, "train_child", rerun)
    search_lib.search(config, workdir)
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
    monkeypatch.setattr(nasrl, "train_child", lambda *a, **k: pytest.fail("trained"))
    kind = discrete.HistoryError if error == "history" else IncompatibleCheckpointError
    with pytest.raises(kind, match=message):
        search_lib.search(_config(fake_fmnist_dir), workdir)
    assert open(path).read() == before


_MULTI_DEVICE = r"""
import json, sys, threading
import jax, jax.numpy as jnp
from experiments.configs import nasrl_tiny
from jnas.runner import discrete, setup_jax
from jnas.spaces import nasrl

setup_jax()
config = nasrl_tiny.get_config()
config.data.data_dir, workdir = sys.argv[1], sys.argv[2]
config.search.rounds = 1  # 3 children, on devices 0, 1, 2
seen, threads, real = [], set(), nasrl.train_child

def train_child(arch, *args, **kwargs):
    seen.append(jnp.zeros(()).devices().pop().id)  # the device train_child's arrays go to
    threads.add(threading.get_ident())
    return real(arch, *args, **kwargs)

nasrl.train_child = train_child
summary = discrete.search(config, workdir)
out = {"devices": jax.local_device_count(), "seen": seen, "threads": len(threads)}
print(json.dumps(dict(out, summary=summary)))
"""


def test_children_train_on_all_devices_with_the_same_rewards(
    tmp_path, repo_root, fake_fmnist_dir, finished_run
):
    ref_dir, _, _ = finished_run
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    workdir = str(tmp_path / "multi")
    out = subprocess.run(
        [sys.executable, "-c", _MULTI_DEVICE, fake_fmnist_dir, workdir],
        cwd=repo_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8 and result["summary"]["devices"] == 8
    _, rows = _history(workdir)
    assert [r["device"] for r in rows] == [0, 1, 2]  # round-robin, in the order asked
    assert sorted(result["seen"]) == [0, 1, 2]  # where train_child's arrays really went
    assert result["threads"] == 3  # one worker thread per device
    # The same children with the same rewards as on one device, bit for bit.
    ref = [r for r in _history(ref_dir)[1] if r["round"] == 0]
    assert _stable(rows) == _stable(ref)
