"""End to end: retraining on synthetic data, resumption, evaluation, pmap, bad input."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.configs import eval_tiny
from jnas.config import with_overrides
from jnas.data import get_dataset_info
from jnas.errors import WorkdirConfigError
from jnas.ops import xla_cpu
from jnas.runner import train as train_lib
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError
from jnas.runner.errors import NonFiniteLossError
from jnas.spaces.cells import NetworkConfigError
from jnas.spaces.genotype import MalformedGenotypeError
from jnas.spaces.published import PUBLISHED


def synthetic_data(n_train=256, n_test=64, size=32, channels=3, seed=0):
    """A learnable CIFAR look-alike: class k is a coloured square at one of 10 places."""
    rng = np.random.default_rng(seed)
    info = dataclasses.replace(
        get_dataset_info("cifar10"), name="synthetic", image_shape=(size, size, channels)
    )
    if channels == 1:
        info = dataclasses.replace(info, mean=(0.5,), std=(0.25,))

    def make(n):
        labels = rng.integers(0, 10, n).astype(np.int32)
        images = rng.integers(0, 80, (n, size, size, channels)).astype(np.uint8)
        for i, k in enumerate(labels):
            r, c = 4 + 12 * (k // 5), 2 + 6 * (k % 5)
            images[i, r : r + 8, c : c + 6] = 230
        return images, labels

    return info, make(n_train), make(n_test)


DATA = synthetic_data()


def _config(**overrides):
    config = eval_tiny.get_config()
    config.model.auxiliary = True  # 32x32 synthetic images: the aux head sees 8x8
    config.train.drop_path_prob = 0.2
    config.optim.lr = 0.05
    return with_overrides(config, overrides)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("train"))
    return workdir, train_lib.train(_config(), workdir, data=DATA)


def test_workdir_layout_results_and_learning(finished):
    workdir, results = finished
    for name in ("config.json", "genotype.txt", "network.json", "metrics.jsonl", "results.json"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tb"))
    assert json.load(open(os.path.join(workdir, "results.json")))["test_acc"] == results["test_acc"]
    assert results["steps"] == 8 and results["params"] < results["params_with_aux"]
    records = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]  # it learns
    assert epochs[0]["drop_path_prob"] == 0.0
    assert epochs[1]["drop_path_prob"] == pytest.approx(0.1)
    assert 0.0 <= results["test_acc"] <= 1.0


def test_evaluate_final_and_best(finished):
    workdir, results = finished
    final = train_lib.evaluate(workdir, which="final", data=DATA)
    assert final["step"] == 8
    assert final["test_acc"] == pytest.approx(results["test_acc"], abs=1e-6)
    best = train_lib.evaluate(workdir, which="best", data=DATA)
    assert best["test_acc"] == pytest.approx(results["best_test_acc"], abs=1e-6)
    assert os.path.exists(os.path.join(workdir, "eval_best.json"))


def _final_params(workdir):
    return train_lib.restore_state(workdir)[3].params


@pytest.mark.slow
def test_resume_matches_uninterrupted(finished, tmp_path):
    workdir, results = finished
    resumed = str(tmp_path / "resumed")
    # "Killed" after step 5: the checkpoint of step 4 (end of epoch 1) survives, 5 is lost.
    out = train_lib.train(_config(**{"train.stop_after_steps": 5}), resumed, data=DATA)
    assert out == {"steps": 5, "stopped": True}
    assert Checkpointer(resumed).latest_step() == 4
    again = train_lib.train(_config(), resumed, data=DATA)
    assert again["test_acc"] == results["test_acc"]
    assert again["test_loss"] == pytest.approx(results["test_loss"], rel=1e-6)
    a, b = _final_params(workdir), _final_params(resumed)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7), a, b)
    lines = lambda d: [  # noqa: E731
        {k: v for k, v in json.loads(x).items() if k not in ("train_wall_s", "compile_s")}
        for x in open(os.path.join(d, "metrics.jsonl"))
    ]
    assert [r["step"] for r in lines(resumed)] == [r["step"] for r in lines(workdir)]


@pytest.mark.slow  # the save-time guard is in the default suite (tests/runner/integrity_test.py)
def test_nan_loss_stops_without_overwriting_checkpoints(tmp_path):
    workdir = str(tmp_path / "nan")
    train_lib.train(_config(**{"train.stop_after_steps": 4}), workdir, data=DATA)
    info, train, test = DATA
    broken = (dataclasses.replace(info, std=(0.0, 0.0, 0.0)), train, test)  # inf / nan images
    with pytest.raises(NonFiniteLossError, match="untouched"):
        train_lib.train(_config(), workdir, data=broken)
    assert Checkpointer(workdir).latest_step() == 4


def test_bad_input_fails_before_compiling(tmp_path, monkeypatch):
    # The runtime's one-off probe of the XLA CPU options (a 2x2 matmul, cached per process)
    # is not the network: run it first, so the test does not depend on which test ran before.
    xla_cpu.cpu_options()
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled"))
    small = synthetic_data(n_train=32, n_test=16, size=28, channels=1)
    workdir = str(tmp_path / "bad")
    with pytest.raises(NetworkConfigError, match="auxiliary"):
        train_lib.train(_config(), workdir, data=small)
    assert not os.path.exists(workdir)
    with pytest.raises(MalformedGenotypeError, match="neither a known genotype"):
        train_lib.train(_config(genotype="NOT_A_CELL"), workdir, data=DATA)
    text = "Genotype(normal=[('sep_conv_3x3', 3)], normal_concat=[2], reduce=[], reduce_concat=[2])"
    with pytest.raises(MalformedGenotypeError):
        train_lib.train(_config(genotype=text), workdir, data=DATA)


def test_other_genotype_in_same_workdir_is_refused(finished):
    workdir, _ = finished
    with pytest.raises(WorkdirConfigError, match="genotype"):  # config.json's check
        train_lib.train(_config(genotype="DARTS_V1"), workdir, data=DATA)
    with pytest.raises(IncompatibleCheckpointError, match="another genotype"):  # past it
        train_lib.train(_config(genotype="DARTS_V1"), workdir, data=DATA, allow_config_change=True)


def test_genotype_argument_and_file(tmp_path):
    path = tmp_path / "genotype.txt"
    path.write_text(str(PUBLISHED["PC_DARTS"]) + "\n")
    config = _config(genotype=str(path))
    assert train_lib.resolve_genotype(config, None) == PUBLISHED["PC_DARTS"]
    assert train_lib.resolve_genotype(config, PUBLISHED["GDAS"]) == PUBLISHED["GDAS"]


def _compiled_texts(monkeypatch) -> list[str]:
    """The StableHLO of every step the retraining compiles from now on (and calls)."""
    texts = []
    compile_ = train_lib.Parallel.compile

    def compile(self, fn, **kwargs):
        jitted = compile_(self, fn, **kwargs)

        def call(*args):
            if not texts or jitted is not texts[-1][0]:
                texts.append((jitted, jitted.lower(*args).as_text()))
            return jitted(*args)

        return call

    monkeypatch.setattr(train_lib.Parallel, "compile", compile)
    return texts


@pytest.mark.slow
def test_runtime_switches_pick_the_program_and_are_recorded(tmp_path, monkeypatch, finished):
    """config.runtime.native_bn=False: the step compiles Flax's batch norm, not the native
    kernels (traced afresh, though the same network was traced with them on), and
    config.json says so; the default records the switches resolved on this machine."""
    from jnas.ops import native

    monkeypatch.delenv("JNAS_NATIVE", raising=False)
    monkeypatch.delenv("JNAS_NATIVE_BN", raising=False)
    texts = _compiled_texts(monkeypatch)
    # As --config.runtime.native_bn=false sets it.
    config = _config(**{"train.stop_after_steps": 1, "runtime.native_bn": "false"})
    train_lib.train(config, str(tmp_path / "off"), data=DATA)
    step_text = texts[0][1]
    assert "jnas_bn_" not in step_text
    assert ("jnas_dw_" in step_text) == native.available()  # the other kernels stay on
    runtime = json.load(open(tmp_path / "off" / "config.json"))["runtime"]
    assert runtime["native_bn"] is False and runtime["resolved"]["native_bn"] is False
    assert runtime["source"]["native_bn"] == "config"
    assert runtime["native"] == "auto" and runtime["resolved"]["native"] is native.available()

    texts.clear()
    train_lib.train(_config(**{"train.stop_after_steps": 1}), str(tmp_path / "on"), data=DATA)
    assert ("jnas_bn_stats" in texts[0][1]) == native.available()
    runtime = json.load(open(tmp_path / "on" / "config.json"))["runtime"]
    assert runtime["native_bn"] == "auto"
    assert runtime["resolved"]["native_bn"] is native.available()

    # An environment variable overrides the config, and config.json names it.
    monkeypatch.setenv("JNAS_NATIVE_BN", "0")
    texts.clear()
    train_lib.train(_config(**{"train.stop_after_steps": 1}), str(tmp_path / "env"), data=DATA)
    assert "jnas_bn_" not in texts[0][1]
    runtime = json.load(open(tmp_path / "env" / "config.json"))["runtime"]
    assert runtime["native_bn"] is False
    assert runtime["source"]["native_bn"] == "JNAS_NATIVE_BN=0"


# GDAS-FRC's genotype: its reduction cells are the fixed cell, whose ops live in jnas.ops.frc.
GDAS_FRC_GENOTYPE = (
    "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1), ('skip_connect', 0), "
    "('sep_conv_5x5', 2), ('sep_conv_3x3', 3), ('skip_connect', 0), ('sep_conv_5x5', 4), "
    "('sep_conv_3x3', 3)], normal_concat=[2, 3, 4, 5], reduce=[('frc_conv_1x3_3x1', 0), "
    "('none', 1), ('frc_conv_1x3_3x1', 1), ('none', 0), ('max_pool_3x3_bn', 0), ('none', 1), "
    "('max_pool_3x3_bn', 1), ('none', 0)], reduce_concat=[2, 3, 4, 5])"
)


def test_retrain_a_gdas_frc_genotype_from_the_command_line(tmp_path, repo_root, fake_fmnist_dir):
    """What a user does after a gdas_frc search: retrain its genotype.txt with
    experiments.train, in a fresh process where nothing imported the FRC ops."""
    path = tmp_path / "genotype.txt"
    path.write_text(GDAS_FRC_GENOTYPE + "\n")
    workdir = tmp_path / "frc"
    cmd = [
        sys.executable,
        "-m",
        "experiments.train",
        "--config=experiments/configs/eval_tiny.py",
        f"--config.genotype={path}",
        f"--config.data.data_dir={fake_fmnist_dir}",
        "--config.train.epochs=1",
        "--config.train.max_steps_per_epoch=2",
        f"--workdir={workdir}",
    ]
    proc = subprocess.run(cmd, cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test accuracy" in proc.stdout
    results = json.load(open(workdir / "results.json"))
    assert results["genotype"] == GDAS_FRC_GENOTYPE and results["steps"] == 2
    assert (workdir / "genotype.txt").read_text().strip() == GDAS_FRC_GENOTYPE


@pytest.mark.slow  # 8-device subprocess, about 2 min cold on 2 cores
def test_pmap_on_8_devices_equals_one_device(tmp_path, run_script):
    out = run_script("train_pmap.py", tmp_path, devices=8, timeout=900)
    one, many = out["none"], out["pmap"]
    assert one["res"]["steps"] == many["res"]["steps"] == 3
    for a, b in zip(one["params"], many["params"]):
        # Float summation order differs (psum of shards vs one reduction): tiny drift only;
        # different drop-path masks or BN statistics would differ by O(lr * grad) ~ 1e-2.
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=5e-4)
    assert one["res"]["test_acc"] == pytest.approx(many["res"]["test_acc"], abs=1 / 64 + 1e-6)


@pytest.mark.slow
def test_darts_v2_learns_fashion_mnist(tmp_path):
    """The proof that retraining learns, on real data, on a CPU, in a fixed short budget:
    DARTS_V2 (C=16, 6 cells) for 2 epochs (312 steps) on 20,000 Fashion-MNIST images (about
    4 min on the shared 2-core CPU, 9 before session 5; 0.77 after the first epoch)."""
    from experiments.configs import eval_fashion_mnist
    from jnas.data import DatasetNotFoundError

    config = eval_fashion_mnist.get_config()
    config.data.limit = 20_000
    config.train.epochs = 2
    config.progress = False
    try:
        data = train_lib.load_data(config)
    except DatasetNotFoundError as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    results = train_lib.train(config, str(tmp_path / "fmnist"), data=data)
    assert results["params"] < 200_000
    assert results["test_acc"] >= 0.80, results
