"""Bad input gets a named error and nothing else (issue 18): the entry points' error boundary
(jnas/cli.py), the whole-config validation before the workdir is touched (jnas/validate.py)
and the workdir-belongs-to-one-config check (jnas/runner/workdir.py).

The command-line cases run in few processes, all started at once by one module fixture: two
``tests/scripts/cli_cases.py`` drivers (many ``experiments.search`` / ``experiments.train``
command lines each, through the same boundary function, with XLA compilation refused) and
four real ``python -m ...`` processes for what only a real process shows (its exit status
and stderr). Every case fails before anything compiles. The validator and the workdir
comparison are tested in process.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys

import ml_collections
import pytest

import jnas
from jnas import cli, validate
from jnas.config import with_overrides
from jnas.errors import (
    EXIT_BAD_INPUT,
    EXIT_DATA,
    EXIT_NON_FINITE,
    EXIT_WORKDIR,
    ConfigError,
    JnasError,
    WorkdirConfigError,
)
from jnas.runner import run_search, use_runtime
from jnas.runner import workdir as workdir_lib
from jnas.strategies.oneshot import GradientStrategy

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEARCH = "--config=experiments/configs/darts_tiny.py"
TRAIN = "--config=experiments/configs/eval_tiny.py"
LONG = "x" * 5000

# (name, flags without --workdir, exit status, regexes stderr must match). Each case gets its
# own --workdir under tmp (never created) unless it names "WORKDIR" (a prepared workdir).
SEARCH_CASES = [
    (
        "unknown-key",
        [SEARCH, "--config.search.epoch=3"],
        2,
        [r"unknown config key 'search.epoch'", r"did you mean 'search.epochs'\?"],
    ),  # noqa: E501
    ("unknown-section", [SEARCH, "--config.serch.epochs=3"], 2, [r"did you mean 'search'\?"]),
    (
        "unknown-key-far",
        [SEARCH, "--config.search.xyzzy=3"],
        2,
        [r"'search.xyzzy'", r"the keys there: .*batch_size.*epochs"],
    ),  # noqa: E501
    (
        "typed-int",
        [SEARCH, "--config.search.epochs=abc"],
        2,
        [r"--config.search.epochs=abc", r"int\(\)"],
    ),  # noqa: E501
    ("typed-float-for-int", [SEARCH, "--config.search.batch_size=1.5"], 2, [r"batch_size=1.5"]),
    ("typed-bool", [SEARCH, "--config.progress=maybe"], 2, [r"config.progress=maybe"]),
    (
        "missing-config-file",
        ["--config=/nonexistent/c.py"],
        2,
        [r"cannot be loaded: .*No such file"],
    ),  # noqa: E501
    ("config-is-a-directory", ["--config=tests"], 2, [r"cannot be loaded: .*Is a directory"]),
    ("get-config-argument", [SEARCH + ":retrain"], 2, [r"get_config\(\) failed: TypeError"]),
    ("syntax-error-in-config", ["--config=BROKEN"], 2, [r"cannot be loaded: .*SyntaxError"]),
    ("missing-workdir-flag", [SEARCH, "NO_WORKDIR"], 2, [r"--workdir"]),
    ("positional-argument", [SEARCH, "extra"], 2, [r"unexpected argument\(s\) 'extra'"]),
    (
        "zero-and-nan",
        [
            SEARCH,
            "--config.search.epochs=0",
            "--config.optim_w.lr=nan",
            "--config.model.layers=0",
            "--config.checkpoint_every_steps=0",
            "--config.log_every_steps=0",
            "--config.keep_checkpoints=0",
        ],
        2,
        [
            r"\(6 problems\)",
            r"search.epochs: 0 is not an integer >= 1",
            r"optim_w.lr: nan is not a finite number > 0",
            r"model.layers",
            r"checkpoint_every_steps",
            r"log_every_steps",
            r"keep_checkpoints",
        ],
    ),  # noqa: E501
    ("negative-lr", [SEARCH, "--config.optim_alpha.lr=-0.1"], 2, [r"optim_alpha.lr: -0.1"]),
    ("zero-channels", [SEARCH, "--config.model.C=0"], 2, [r"model.C: 0 is not an integer >= 1"]),
    ("infinite-lr", [SEARCH, "--config.optim_w.lr=inf"], 2, [r"optim_w.lr: inf"]),
    (
        "arch-never-trained",
        [SEARCH, "--config.search.arch_start_epoch=2"],
        2,
        [r"alpha would never be trained"],
    ),  # noqa: E501
    (
        "unknown-dataset",
        [SEARCH, "--config.data.name=cifar11"],
        2,
        [r"unknown data set 'cifar11'; did you mean 'cifar10'\?"],
    ),  # noqa: E501
    (
        "unknown-strategy",
        [SEARCH, "--config.strategy=dart"],
        2,
        [r"UnknownNameError: unknown strategy 'dart'"],
    ),  # noqa: E501
    ("bad-choice", [SEARCH, "--config.parallel=pmapp"], 2, [r"did you mean 'pmap'\?"]),
    (
        "pcdarts-k",
        ["--config=experiments/configs/pcdarts_fashion_mnist.py", "--config.pcdarts.k=3"],
        2,
        [r"pcdarts.k=3 must divide"],
    ),  # noqa: E501
    (
        "gdas-temperature",
        ["--config=experiments/configs/gdas_fashion_mnist.py", "--config.gdas.tau_min=0.0"],
        2,
        [r"temperature must stay positive"],
    ),  # noqa: E501
    (
        "gdas-second-order",
        ["--config=experiments/configs/gdas_fashion_mnist.py", "--config.search.hypergradient=fd"],
        2,
        [r"'fd' is not supported"],
    ),  # noqa: E501
    (
        "pdarts-stages",
        ["--config=experiments/configs/pdarts_fashion_mnist.py", "--config.pdarts.num_ops=(8, 5)"],
        2,
        [r"one entry per stage"],
    ),  # noqa: E501
    (
        "nasrl-zero-rounds",
        ["--config=experiments/configs/nasrl_tiny.py", "--config.search.rounds=0"],
        2,
        [r"search.rounds: 0"],
    ),  # noqa: E501
    (
        "nasrl-zero-layers",
        ["--config=experiments/configs/nasrl_tiny.py", "--config.space.num_layers=0"],
        2,
        [r"num_layers must be an int >= 1, got 0"],
    ),
    (
        "nasrl-zero-filters",
        ["--config=experiments/configs/nasrl_tiny.py", "--config.space.num_filters=(0,)"],
        2,
        [r"num_filters must be ints >= 1"],
    ),
    (
        "reinforce-negative-lr",
        [
            "--config=experiments/configs/nasrl_tiny.py",
            "--config.strategy=reinforce",
            "--config.reinforce.learning_rate=-0.1",
        ],
        2,
        [r"learning_rate must be finite and > 0"],
    ),
    ("darts-multiplier", [SEARCH, "--config.model.multiplier=5"], 2, [r"last multiplier=5 states"]),
    (
        "eval-config-to-search",
        [TRAIN],
        2,
        [r"evaluation \(retraining\) config", r"experiments.train"],
    ),  # noqa: E501
    (
        "tabular-config-to-search",
        ["--config=experiments/configs/nb201_tiny.py"],
        2,
        [r"experiments.tabular"],
    ),  # noqa: E501
    (
        "retrain-without-eval-config",
        [SEARCH, "--config.retrain.enabled=true"],
        2,
        [r"not an evaluation config"],
    ),  # noqa: E501
    (
        "long-value-cut",
        [SEARCH, f"--config.data.name={LONG}"],
        2,
        [r"unknown data set 'x{200}\.\.\. \(5000 characters\)'"],
    ),  # noqa: E501
    (
        "workdir-of-another-config",
        [
            SEARCH,
            "--config.seed=1",
            "--config.search.batch_size=8",
            "--config.progress=true",
            "WORKDIR",
        ],
        4,
        [
            r"belongs to another config: 2 key",
            r"search.batch_size: 16 -> 8",
            r"seed: 0 -> 1",
            r"--allow_config_change",
        ],
    ),  # noqa: E501
]
TRAIN_CASES = [
    ("search-config-to-train", [SEARCH], 2, [r"this is a search config", r"experiments.search"]),
    (
        "unknown-genotype",
        [TRAIN, "--config.genotype=DARTS_V3"],
        2,
        [r"\w+GenotypeError: 'DARTS_V3' is neither", r"did you mean 'DARTS_V2'\?"],
    ),  # noqa: E501
    (
        "ranges",
        [
            TRAIN,
            "--config.train.epochs=-1",
            "--config.train.batch_size=0",
            "--config.optim.lr=nan",
            "--config.train.drop_path_prob=1.5",
        ],
        2,
        [
            r"4 problems",
            r"train.epochs: -1",
            r"train.batch_size: 0",
            r"optim.lr: nan",
            r"train.drop_path_prob: 1.5 is not a number in \[0.0, 1.0\)",
        ],
    ),  # noqa: E501
    (
        "runtime-switch",
        [TRAIN, "--config.runtime.native=maybe"],
        2,
        [r"RuntimeSettingsError: .*'maybe'"],
    ),  # noqa: E501
    ("unknown-key", [TRAIN, "--config.train.epoch=3"], 2, [r"did you mean 'train.epochs'\?"]),
    (
        "workdir-of-another-config",
        [TRAIN, "--config.model.C=8", "--config.log_every_steps=7", "WORKDIR"],
        4,
        [r"model.C: 4 -> 8", r"1 key"],
    ),  # noqa: E501
]


def _config_json(config) -> dict:
    """What a host loop writes to config.json for ``config``."""
    with use_runtime(config) as (resolved, _):
        return json.loads(json.dumps(resolved.to_dict(), default=str))


def _snapshot(root: str) -> dict:
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _argv(case, tmp: str, workdirs: dict) -> list[str]:
    name, flags, *_ = case
    out = []
    for flag in flags:
        if flag == "WORKDIR":
            out.append(f"--workdir={workdirs[name]}")
        elif flag == "NO_WORKDIR":
            pass
        elif flag == "--config=BROKEN":
            path = os.path.join(tmp, "broken_config.py")
            with open(path, "w") as f:
                f.write("def get_config(:\n")
            out.append(f"--config={path}")
        else:
            out.append(flag)
    if not any(f.startswith("--workdir") for f in out) and "NO_WORKDIR" not in flags:
        out.append(f"--workdir={os.path.join(tmp, 'never', name)}")
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every command-line case, run at once in six processes; the prepared workdirs and
    their contents before the runs."""
    tmp = str(tmp_path_factory.mktemp("cli"))
    repo_root = REPO
    from experiments.configs import darts_tiny, eval_tiny

    workdirs = {}
    for kind, config in (("search", darts_tiny.get_config()), ("train", eval_tiny.get_config())):
        path = os.path.join(tmp, f"{kind}-workdir")
        os.makedirs(os.path.join(path, "checkpoints", "3"))
        with open(os.path.join(path, "checkpoints", "3", "state"), "wb") as f:
            f.write(b"\x00state")
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(_config_json(config), f, indent=2, sort_keys=True)
        workdirs[kind] = path
    before = {k: _snapshot(v) for k, v in workdirs.items()}

    env = dict(os.environ, PYTHONPATH=repo_root, JNAS_MALLOC="0")
    procs = {}
    for kind, module, cases in (
        ("search", "experiments.search", SEARCH_CASES),
        ("train", "experiments.train", TRAIN_CASES),
    ):
        named = {c[0]: workdirs[kind] for c in cases if "WORKDIR" in c[1]}
        spec = [{"name": c[0], "argv": _argv(c, tmp, named)} for c in cases]
        path = os.path.join(tmp, f"{kind}_cases.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        script = os.path.join(repo_root, "tests", "scripts", "cli_cases.py")
        procs[kind] = [sys.executable, script, module, path]
    procs["real-unknown-key"] = [
        *(sys.executable, "-m", "experiments.search", SEARCH, "--config.search.epoch=3"),
        f"--workdir={os.path.join(tmp, 'never', 'real')}",
    ]
    procs["real-search-config-to-train"] = [
        *(sys.executable, "-m", "experiments.train", SEARCH),
        f"--workdir={os.path.join(tmp, 'never', 'real-train')}",
    ]
    procs["real-workdir"] = [
        *(sys.executable, "-m", "experiments.search", SEARCH, "--config.seed=5"),
        f"--workdir={workdirs['search']}",
    ]
    procs["real-bug"] = [
        sys.executable,
        "-c",
        "from jnas import cli; cli.run(lambda argv: 1 / 0)",
    ]
    started = {
        k: subprocess.Popen(
            cmd, cwd=repo_root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for k, cmd in procs.items()
    }
    out = {}
    for k, p in started.items():
        stdout, stderr = p.communicate(timeout=300)
        out[k] = {"status": p.returncode, "stdout": stdout, "stderr": stderr}
    for kind in ("search", "train"):
        assert out[kind]["status"] == 0, out[kind]["stderr"][-3000:]
        out[kind] = json.loads(out[kind]["stdout"].split("RESULT", 1)[1])
    return {"out": out, "tmp": tmp, "workdirs": workdirs, "before": before}


def _check_case(result, case):
    name, _, status, patterns = case
    assert result["raised"] is None, f"{name}: left the boundary: {result['raised']}"
    err = result["stderr"]
    assert "Traceback" not in err, f"{name}:\n{err}"
    assert result["status"] == status, f"{name}: exit {result['status']}\n{err}"
    for pattern in patterns:
        assert re.search(pattern, err), f"{name}: no {pattern!r} in\n{err}"
    assert len(err) < 2500, f"{name}: {len(err)} characters of stderr"


@pytest.mark.parametrize("case", SEARCH_CASES, ids=[c[0] for c in SEARCH_CASES])
def test_search_command_lines(runs, case):
    _check_case(runs["out"]["search"][case[0]], case)


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_command_lines(runs, case):
    _check_case(runs["out"]["train"][case[0]], case)


def test_no_workdir_is_created_and_a_refused_one_is_byte_identical(runs):
    assert not os.path.exists(os.path.join(runs["tmp"], "never"))
    for kind, path in runs["workdirs"].items():
        assert _snapshot(path) == runs["before"][kind], kind


def test_real_processes_exit_with_the_documented_status(runs):
    out = runs["out"]
    for name, status, pattern in (
        ("real-unknown-key", EXIT_BAD_INPUT, "did you mean 'search.epochs'?"),
        ("real-search-config-to-train", EXIT_BAD_INPUT, "this is a search config"),
        ("real-workdir", EXIT_WORKDIR, "seed: 0 -> 5"),
    ):
        assert out[name]["status"] == status, (name, out[name]["stderr"])
        assert pattern in out[name]["stderr"], (name, out[name]["stderr"])
        assert "Traceback" not in out[name]["stderr"], (name, out[name]["stderr"])
        assert len(out[name]["stderr"].splitlines()) <= 8, (name, out[name]["stderr"])
    # A bug keeps Python's traceback and status 1.
    bug = out["real-bug"]
    assert bug["status"] == 1 and "Traceback" in bug["stderr"], bug
    assert bug["stderr"].rstrip().endswith("ZeroDivisionError: division by zero"), bug


# --- in process: the error classes ---------------------------------------------------------


def test_every_error_class_of_jnas_is_a_jnas_error():
    """All known errors derive from one place, so the boundary catches each of them."""
    classes = []
    for info in pkgutil.walk_packages(jnas.__path__, "jnas."):
        if ".native" in info.name:
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__.startswith("jnas.")
            ):
                classes.append(obj)
    classes = set(classes)
    assert len(classes) >= 15
    assert sorted(c.__name__ for c in classes if not issubclass(c, JnasError)) == []


def test_describe_maps_known_errors_to_their_status_and_bugs_to_none():
    from jnas.data.sources import DatasetNotFoundError
    from jnas.registry import UnknownNameError
    from jnas.runner.checkpoint import IncompatibleCheckpointError
    from jnas.runner.errors import NonFiniteLossError
    from jnas.spaces.genotype import MalformedGenotypeError

    cases = [
        (UnknownNameError("unknown strategy 'x'"), EXIT_BAD_INPUT),
        (MalformedGenotypeError("bad"), EXIT_BAD_INPUT),
        (ConfigError("bad"), EXIT_BAD_INPUT),
        (NonFiniteLossError("nan"), EXIT_NON_FINITE),
        (IncompatibleCheckpointError("other"), EXIT_WORKDIR),
        (WorkdirConfigError("other"), EXIT_WORKDIR),
        (DatasetNotFoundError("missing"), EXIT_DATA),
    ]
    for error, status in cases:
        assert cli.describe(error)[0] == status, error
    assert cli.describe(UnknownNameError("unknown 'x'"))[1] == "UnknownNameError: unknown 'x'"
    for bug in (ValueError("x"), KeyError("x"), ZeroDivisionError(), SystemExit(2)):
        assert cli.describe(bug) is None
    assert len(cli.describe(ConfigError("y" * 10_000))[1]) < 400


# --- in process: the validator -------------------------------------------------------------


def _shipped_configs():
    out = []
    for path in sorted(glob.glob(os.path.join("experiments", "configs", "*.py"))):
        name = os.path.basename(path)[:-3]
        if name != "__init__":
            out.append(name)
    return out


def test_every_shipped_config_is_valid_for_its_command(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    names = _shipped_configs()
    assert len(names) >= 20
    for name in names:
        config = importlib.import_module(f"experiments.configs.{name}").get_config()
        if "strategies" in config:  # the tabular benchmark: not a search or retraining
            with pytest.raises(ConfigError, match="experiments.tabular"):
                validate.check_search_config(config)
        elif name == "eval_imagenet":  # config only: ImageNet is not a loadable data set
            with pytest.raises(ConfigError, match="unknown data set 'imagenet2012'"):
                validate.check_train_config(config)
        elif "strategy" in config:
            validate.check_search_config(config)
            with pytest.raises(ConfigError, match="this is a search config"):
                validate.check_train_config(config)
        else:
            validate.check_train_config(config)
            with pytest.raises(ConfigError, match="evaluation"):
                validate.check_search_config(config)
    quickstart = importlib.import_module("experiments.configs.darts_fashion_mnist")
    validate.check_search_config(with_overrides(quickstart.get_config(), {"retrain.enabled": True}))
    bad = with_overrides(
        quickstart.get_config(), {"retrain.enabled": True, "retrain.train.epochs": 0}
    )
    with pytest.raises(ConfigError, match=r"retrain.train.epochs: 0"):
        validate.check_search_config(bad)


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        ({"seeds": 0}, r"seeds: 0 is not an integer >= 1"),
        ({"budget": float("nan"), "population_size": 0}, r"\(2 problems\)"),
        ({"budget_unit": "hours"}, r"budget_unit: hours is not one of"),
        ({"strategies": ("random", "hill")}, r"unknown strategy 'hill'"),
        ({"strategies": "random"}, r"strategies: random is not a non-empty list"),
        ({"datasets": ()}, r"datasets: \(\) is not a non-empty list"),
        ({"space.name": "darts"}, r"'darts' has no table"),
        ({"evolution.pool_sizes": 4}, r"unknown option\(s\) \[.pool_sizes.\]"),
    ],
)
def test_tabular_configs_are_checked_before_the_table_is_read(overrides, pattern):
    from experiments.configs import nb201_tiny

    config = nb201_tiny.get_config()
    validate.check_tabular_config(config)
    config = ml_collections.ConfigDict(config.to_dict(), type_safe=False)  # any value
    for key, value in overrides.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    with pytest.raises(JnasError, match=pattern):
        validate.check_tabular_config(config)


def _toy_check(config):
    if config.toy.width % 3:
        raise ConfigError(f"toy.width={config.toy.width} must be a multiple of 3")


# A strategy loaded by path: its own check runs without an edit of the validator.
TOY = GradientStrategy(build=None, title="toy", check_config=_toy_check)


def test_a_new_strategy_adds_its_own_checks_through_its_hook():
    from experiments.configs import darts_tiny

    config = darts_tiny.get_config()
    with config.unlocked():
        config.strategy = f"{__name__}:TOY"
        config.toy = ml_collections.ConfigDict({"width": 4})
    with pytest.raises(ConfigError, match="toy.width=4 must be a multiple of 3"):
        validate.check_search_config(config)
    config.toy.width = 6
    validate.check_search_config(config)


def test_library_entry_points_validate_before_touching_the_workdir(tmp_path):
    from experiments.configs import darts_tiny, eval_tiny, nasrl_tiny
    from jnas.runner import discrete
    from jnas.runner.train import train

    workdir = str(tmp_path / "w")
    with pytest.raises(ConfigError, match="search.epochs: 0"):
        run_search(with_overrides(darts_tiny.get_config(), {"search.epochs": 0}), workdir)
    with pytest.raises(ConfigError, match="child.batch_size: 0"):
        discrete.search(with_overrides(nasrl_tiny.get_config(), {"child.batch_size": 0}), workdir)
    with pytest.raises(ConfigError, match="train.epochs: 0"):
        train(with_overrides(eval_tiny.get_config(), {"train.epochs": 0}), workdir)
    with pytest.raises(ConfigError, match="this is an evaluation"):
        run_search(eval_tiny.get_config(), workdir)
    assert not os.path.exists(workdir)
    # A named error of a hook keeps its class when it is the only problem.
    from jnas.spaces.genotype import MalformedGenotypeError

    with pytest.raises(MalformedGenotypeError):
        validate.check_train_config(with_overrides(eval_tiny.get_config(), {"genotype": "X"}))


# --- in process: the workdir's config ------------------------------------------------------


def test_config_changes_names_result_changing_keys_only():
    old = {
        "seed": 0,
        "progress": True,
        "log_every_steps": 50,
        "search": {"epochs": 2, "batch_size": 16},
        "retrain": {"progress": True, "train": {"epochs": 1}},
        "runtime": {
            "native": "auto",
            "source": {"native": "default"},
            "resolved": {"native": True},
        },
        "gone": 1,
    }
    new = ml_collections.ConfigDict(
        {
            "seed": 0,
            "progress": False,  # neutral
            "log_every_steps": 7,  # neutral
            "search": {"epochs": 3, "batch_size": 16},
            "retrain": {"progress": False, "train": {"epochs": 1}},  # neutral at any depth
            "runtime": {
                "native": "auto",
                "source": {"native": "JNAS_NATIVE=1"},  # neutral: where it came from
                "resolved": {"native": False},  # another program: counts
            },
            "added": (1, 2),
        }
    )
    got = workdir_lib.config_changes(old, new)
    absent = workdir_lib.ABSENT
    assert got == [
        ("added", absent, [1, 2]),
        ("gone", 1, absent),
        ("runtime.resolved.native", True, False),
        ("search.epochs", 2, 3),
    ]


def test_config_changes_accept_keys_added_later_at_their_old_meaning():
    """A workdir recorded before ``model.compute_dtype`` and the GPU switch existed resumes
    under a config that holds them at the values that compute the same, and only then."""
    old = {"model": {"C": 4}, "runtime": {"native": "auto", "resolved": {"native": True}}}
    same = ml_collections.ConfigDict(
        {
            "model": {"C": 4, "compute_dtype": "float32"},
            "runtime": {
                "native": "auto",
                "xla_gpu_options": "auto",
                "resolved": {"native": True, "xla_gpu_options": False},
            },
        }
    )
    assert workdir_lib.config_changes(old, same) == []
    other = ml_collections.ConfigDict(same.to_dict())
    other.model.compute_dtype = "bfloat16"
    other.runtime.resolved.xla_gpu_options = True
    absent = workdir_lib.ABSENT
    assert workdir_lib.config_changes(old, other) == [
        ("model.compute_dtype", absent, "bfloat16"),
        ("runtime.resolved.xla_gpu_options", absent, True),
    ]


def test_workdir_refuses_another_config_unless_allowed(tmp_path):
    from experiments.configs import darts_tiny

    workdir = str(tmp_path / "w")
    config = darts_tiny.get_config()
    with use_runtime(config) as (resolved, _):
        workdir_lib.check_workdir(resolved, workdir)  # absent: nothing to compare
        os.makedirs(workdir)
        workdir_lib.record_config(resolved, workdir)
    original = open(os.path.join(workdir, "config.json")).read()
    assert json.loads(original) == _config_json(config)

    same = with_overrides(config, {"progress": True, "checkpoint_every_steps": 9})
    other = with_overrides(config, {"seed": 3, "optim_w.lr": 0.5})
    with use_runtime(same) as (resolved, _):
        workdir_lib.check_workdir(resolved, workdir)
        workdir_lib.record_config(resolved, workdir)  # neutral keys: the file is kept
    with use_runtime(other) as (resolved, _):
        before = _snapshot(workdir)
        with pytest.raises(WorkdirConfigError) as err:
            workdir_lib.check_workdir(resolved, workdir)
        assert _snapshot(workdir) == before
        assert "optim_w.lr: 0.025 -> 0.5" in str(err.value) and "seed: 0 -> 3" in str(err.value)
        assert "--allow_config_change" in str(err.value)
        workdir_lib.check_workdir(resolved, workdir, allow_config_change=True)
        assert _snapshot(workdir) == before  # the check itself writes nothing
        workdir_lib.record_config(resolved, workdir)
    assert json.load(open(os.path.join(workdir, "config.json"))) == _config_json(other)
    (line,) = open(os.path.join(workdir, "config_changes.jsonl")).read().splitlines()
    assert json.loads(line)["changes"] == {
        "optim_w.lr": {"old": 0.025, "new": 0.5},
        "seed": {"old": 0, "new": 3},
    }
    with use_runtime(other) as (resolved, _):
        workdir_lib.check_workdir(resolved, workdir)  # the workdir now belongs to it


def test_unreadable_config_json_and_bad_workdir_paths_are_named(tmp_path):
    config = ml_collections.ConfigDict({"seed": 0})
    (tmp_path / "config.json").write_text('{"seed": 0')  # cut short
    with pytest.raises(WorkdirConfigError, match="cannot be read"):
        workdir_lib.check_workdir(config, str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        workdir_lib.check_workdir(config, str(tmp_path / "file"))
    with pytest.raises(ConfigError, match="empty"):
        workdir_lib.check_workdir(config, "")
