"""The ENAS host loop (jnas.runner.enas) on the real spaces: the tiny micro and macro searches
end to end through jnas.runner.run_search, a SIGKILLed search resumes bit for bit (the
kill/resume helpers of resume_test), and a config that cannot work is refused before the
workdir is touched. The toy-space tests of the same loop are in tests/strategies/enas_test.py
(cheap); the real supergraphs take a minute or more to compile on 2 cores: -m slow."""

from __future__ import annotations

import json
import os

import pytest

from experiments.configs import enas_tiny
from jnas.config import with_overrides
from jnas.errors import ConfigError
from jnas.runner import run_search

MACRO_TINY = {
    "space": {"name": "enas_macro", "num_layers": 3, "out_filters": 4, "keep_prob": 0.9},
    "controller.symmetric_anchors": True,
    "controller.skip_weight": 0.8,
    "controller.tanh_constant": 1.5,
    "controller.op_tanh_reduce": 1.0,
    "search.reward_train_mode": False,
}


@pytest.mark.parametrize(
    "key, value, named",
    [
        ("controller.temperature", -1.0, r"controller\.temperature"),
        ("controller.tanh_constant", 0.0, r"controller\.tanh_constant"),
        ("controller.learning_rate", float("nan"), r"controller\.learning_rate"),
        ("space.num_nodes", 0, "num_nodes"),
    ],
)
def test_a_config_that_cannot_work_is_refused_before_the_workdir(
    tmp_path, fake_fmnist_dir, key, value, named
):
    config = with_overrides(enas_tiny.get_config(), {"data.data_dir": fake_fmnist_dir, key: value})
    workdir = str(tmp_path / "w")
    with pytest.raises(ConfigError, match=named):
        run_search(config, workdir)
    assert not os.path.exists(workdir)


def _check_workdir(workdir: str, summary: dict, space_name: str) -> None:
    from jnas.spaces.base import make_space

    with open(os.path.join(workdir, "config.json")) as f:
        space = make_space(json.load(f)["space"])
    assert space.name == space_name
    space.parse(summary["arch"])  # the result is a member of the space, in its text form
    with open(os.path.join(workdir, "derived.json")) as f:
        derived = json.load(f)
    assert summary["arch_acc"] == max(s["acc"] for s in derived["samples"])


@pytest.mark.slow
@pytest.mark.parametrize("space", ["enas_micro", "enas_macro"])
def test_tiny_search_end_to_end(tmp_path, fake_fmnist_dir, space):
    overrides = {"data.data_dir": fake_fmnist_dir}
    if space == "enas_macro":
        overrides.update(MACRO_TINY)
    config = with_overrides(enas_tiny.get_config(), overrides)
    summary = run_search(config, str(tmp_path / space))
    _check_workdir(str(tmp_path / space), summary, space)
    assert summary["steps"] == 6 and summary["controller_updates"] == 4


@pytest.mark.slow
def test_enas_search_sigkilled_resumes_bitwise(repo_root, run_script, tmp_path, fake_fmnist_dir):
    # enas_tiny: 2 epochs of 3 steps, checkpoints at steps 2, 3 (epoch 1 and its controller
    # phase), 4 and 6; killed after step 4's, in epoch 2.
    from resume_test import _jsonl, _kill_and_resume, _same_checkpoints

    overrides = {"data.data_dir": fake_fmnist_dir}
    ref, workdir, summary = _kill_and_resume(
        repo_root, run_script, tmp_path, "search", "enas_tiny", 4, overrides, compiles_nothing=True
    )
    with open(os.path.join(ref, "summary.json")) as f:
        expected = json.load(f)
    drop = lambda d: {k: v for k, v in d.items() if not k.endswith("_s")}  # noqa: E731
    assert drop(summary) == drop(expected)
    for name in ("archs.jsonl", "genotypes.jsonl", "metrics.jsonl"):
        assert _jsonl(workdir, name) == _jsonl(ref, name), name
    _same_checkpoints(ref, workdir)


@pytest.mark.slow
def test_pmap_search_equals_the_one_device_search(run_script, tmp_path, fake_fmnist_dir):
    out = run_script("enas_pmap.py", fake_fmnist_dir, str(tmp_path), devices=2)
    one, two = out["none"], out["pmap"]
    # the same architectures are sampled and rewarded (accuracies psummed over devices)
    for key in (
        "arch",
        "arch_acc",
        "controller_updates",
        "controller_reward",
        "controller_val_acc",
    ):
        assert one[key] == two[key], key
    assert two["controller_baseline"] == pytest.approx(one["controller_baseline"], rel=1e-5)
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
