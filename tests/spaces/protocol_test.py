"""The search-space protocol: a new space touches no runner file.

A toy space defined in this file (three decisions of a one-layer CNN, with a made-up table)
runs in the tabular search (``jnas.tabular.run_search``) and in the discrete host loop with
real child training (``jnas.runner.discrete.search``); the runner files name no space and no
strategy; every registered discrete space keeps the protocol's round trips and named errors.
"""

import ast
import dataclasses
import json
import os
import re
from typing import ClassVar, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import nasrl_tiny
from jnas.registry import UnknownNameError
from jnas.runner import discrete as runner
from jnas.runner.data import load_search_data
from jnas.spaces import discrete
from jnas.spaces.base import SPACES, Fidelity, SearchSpace, make_space
from jnas.spaces.discrete import ArchitectureError, Categorical, DecisionSpec
from jnas.strategies.base import STRATEGIES, make_strategy
from jnas.tabular import Objective, make_budget, run_search

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ToyArchError(ArchitectureError):
    """A toy architecture that is not in the space."""


class ToyArch(NamedTuple):
    width: int
    kernel: int
    pool: str


class _ToyNet(nn.Module):
    arch: ToyArch
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        k = self.arch.kernel
        x = nn.relu(nn.Conv(self.arch.width, (k, k), padding="SAME")(x))
        x = jnp.mean(x, axis=(1, 2)) if self.arch.pool == "mean" else jnp.max(x, axis=(1, 2))
        return nn.Dense(self.num_classes)(x)


class _ToyTable:
    """A made-up benchmark: a validation and a test accuracy (%) per code."""

    def __init__(self, size: int):
        code = np.arange(size)
        self.valid = (50.0 + (7 * code) % size).astype(np.float32)  # a permutation of 50..
        self.test = self.valid - 1.0

    def objective(self, dataset: str = "toy") -> Objective:
        return Objective(
            valid=jnp.asarray(self.valid),
            test=jnp.asarray(self.test),
            seconds=None,
            dataset=dataset,
            valid_column="valid",
            test_column="test",
        )


@SPACES.register("toy_cnn")
@dataclasses.dataclass(frozen=True)
class ToySpace(SearchSpace):
    """One convolution (width, kernel) and a global pool: 3 x 2 x 2 = 12 architectures."""

    widths: tuple[int, ...] = (2, 4, 8)
    kernels: tuple[int, ...] = (1, 3)

    name: ClassVar[str] = "toy_cnn"
    POOLS: ClassVar[tuple[str, ...]] = ("mean", "max")

    @property
    def spec(self) -> DecisionSpec:
        return DecisionSpec(
            (
                Categorical("width", self.widths),
                Categorical("kernel", self.kernels),
                Categorical("pool", self.POOLS),
            )
        )

    def encode(self, obj: ToyArch) -> np.ndarray:
        out = []
        for what, value in obj._asdict().items():
            choices = {"width": self.widths, "kernel": self.kernels, "pool": self.POOLS}[what]
            if value not in choices:
                raise ToyArchError(f"{what} {value!r} is not one of {list(choices)}")
            out.append(choices.index(value))
        return np.asarray(out, np.int32)

    def decode(self, arch) -> ToyArch:
        w, k, p = self.spec.validate(arch).tolist()
        return ToyArch(self.widths[w], self.kernels[k], self.POOLS[p])

    def to_text(self, arch) -> str:
        a = self.decode(arch)
        return f"w{a.width}-k{a.kernel}-{a.pool}"

    def parse(self, text: str) -> np.ndarray:
        m = re.fullmatch(r"w(\d+)-k(\d+)-(\w+)", text.strip()) if isinstance(text, str) else None
        if m is None:
            raise ToyArchError(f"cannot parse toy architecture {text!r}: expected w<n>-k<n>-<pool>")
        return self.encode(ToyArch(int(m[1]), int(m[2]), m[3]))

    def network(self, arch, *, num_classes: int, fidelity: Fidelity | None = None):
        a = arch if isinstance(arch, ToyArch) else self.decode(arch)
        width = 1.0 if fidelity is None else fidelity.width
        return _ToyNet(a._replace(width=max(1, round(a.width * width))), num_classes)

    def load_table(self, path=None) -> _ToyTable:
        del path
        return _ToyTable(self.spec.size)


def test_a_new_space_runs_in_the_tabular_search():
    space = make_space({"name": "toy_cnn"})
    assert space == ToySpace() and space.has_table
    objective = space.load_table().objective()
    budget = make_budget(objective, 10, unit="queries")
    result = run_search("random", space, objective, budget, jax.random.key(0), num_seeds=3)
    codes = np.asarray(result.trace["codes"])

    # The documented keys: seed s searches with split(key, 3)[s]; member i of round r (m = 1)
    # is drawn from fold_in(fold_in(split(k)[1], r), i).
    @jax.jit
    def documented_asks(k):
        loop = jax.random.split(k)[1]
        keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(loop, r), 0))
        archs = jax.vmap(lambda x: discrete.sample_uniform(space.spec, x))(keys(jnp.arange(10)))
        return jax.vmap(space.to_code)(archs)

    for s, k in enumerate(jax.random.split(jax.random.key(0), 3)):
        assert codes[s].tolist() == np.asarray(documented_asks(k)).tolist()
        best = int(np.argmax(objective.valid[codes[s]]))  # the first of ties, as the scan
        assert int(result.best_code[s]) == codes[s][best]
        assert float(result.best_test[s]) == objective.test[codes[s][best]]
    assert np.asarray(result.num_queries).tolist() == [10, 10, 10]
    # A population strategy from a config section, searched on the same table.
    evolution, params = make_strategy("evolution", space.spec, 4, {"pool_size": 4})
    result = run_search(evolution, space, objective, make_budget(objective, 24, unit="queries"),
                        jax.random.key(1), params=params)  # fmt: skip
    valid = np.asarray(result.trace["valid"])
    assert float(result.best_valid) == valid.max() and int(result.num_queries) == 24


def test_a_new_space_runs_in_the_discrete_runner_with_real_children(tmp_path, fake_fmnist_dir):
    config = nasrl_tiny.get_config()
    config.data.data_dir = fake_fmnist_dir
    config.data.limit = 64
    config.space = {"name": "toy_cnn", "widths": (2, 4), "kernels": (1, 3)}
    config.strategy = "random"
    config.search.rounds, config.search.children_per_round = 2, 2
    config.search.num_devices = 1
    config.child.num_steps = 3
    summary = runner.search(config, str(tmp_path))
    assert summary["space"] == "toy_cnn" and summary["num_asked"] == 4
    lines = [json.loads(x) for x in open(tmp_path / runner.HISTORY)]
    header, rows = lines[0]["header"], lines[1:]
    assert header["space"] == {"name": "toy_cnn", "widths": [2, 4], "kernels": [1, 3]}
    space = ToySpace(widths=(2, 4))
    n_val = len(load_search_data(config)[2][1])
    for row in rows:
        arch = space.parse(row["arch"])
        assert row["reward"] * n_val == pytest.approx(round(row["reward"] * n_val))
        a = space.decode(arch)  # conv k x k x 1 x w + bias w, dense w x 10 + 10
        assert row["params"] == a.kernel**2 * a.width + a.width + 10 * a.width + 10
    # A child's reward is its training under its own key, outside the runner too.
    _, train, val = load_search_data(config)
    row = rows[-1]
    reward = space.train_child(
        space.parse(row["arch"]),
        train,
        val,
        config=header["child"],
        key=runner.child_key(config.seed, row["arch"]),
    )
    assert reward == row["reward"]


def _names_in(path: str) -> tuple[set, set]:
    """The modules a file imports and the string constants it holds (docstrings aside)."""
    tree = ast.parse(open(path).read())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    modules, strings = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module)
            modules.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                strings.add(node.value)
    return modules, strings


@pytest.mark.parametrize("path", ["jnas/runner/discrete.py", "jnas/tabular/search.py"])
def test_the_host_loops_name_no_space_and_no_strategy(path):
    entries = [(n, SPACES.get(n)) for n in SPACES.names() if n != "toy_cnn"]
    entries += [(n, STRATEGIES.get(n)) for n in STRATEGIES.names()]
    modules, strings = _names_in(os.path.join(REPO, path))
    assert "jnas.runner.search" not in modules  # the gradient host loop is not imported
    for name, entry in entries:
        assert entry.__module__ not in modules, f"{path} imports {entry.__module__}"
        assert name not in strings, f"{path} names {name!r}"


SPACE_OPTIONS = [
    {"name": "nb201"},
    {"name": "nb201", "channels": 8, "cells_per_stage": 2},
    {"name": "nasrl"},
    {"name": "nasrl", "num_layers": 5, "predict_stride": True},
    {"name": "nasrl", "num_layers": 3, "skip_connections": False, "num_filters": (4, 8)},
    {"name": "toy_cnn", "widths": (3, 5)},
    {"name": "enas_micro"},
    {"name": "enas_macro"},
]


@pytest.mark.parametrize("options", SPACE_OPTIONS, ids=lambda o: json.dumps(o))
def test_round_trips_of_random_architectures(options):
    space = make_space(options)
    assert make_space(json.loads(json.dumps(space.options()))) == space  # options are its JSON
    spec = space.spec
    keys = jax.random.split(jax.random.key(0), 25)
    archs = np.asarray(jax.jit(jax.vmap(lambda k: discrete.sample_uniform(spec, k)))(keys))
    for a in archs:
        np.testing.assert_array_equal(space.parse(space.to_text(a)), a)
        np.testing.assert_array_equal(space.encode(space.decode(a)), a)
    if spec.size < 2**31:
        codes = jax.jit(jax.vmap(space.to_code))(archs)
        np.testing.assert_array_equal(jax.jit(jax.vmap(space.from_code))(codes), archs)
        assert len(set(np.asarray(codes).tolist())) == len({a.tobytes() for a in archs})
    net = space.network(archs[0], num_classes=3)
    assert net == space.network(space.decode(archs[0]), num_classes=3)


@pytest.mark.parametrize("name", ["nb201", "nasrl", "toy_cnn", "enas_micro", "enas_macro"])
def test_bad_architectures_and_options_raise_named_errors(name):
    space = make_space({"name": name})
    with pytest.raises(ArchitectureError):
        space.parse("not an architecture")
    with pytest.raises(ArchitectureError):
        space.parse(None)
    with pytest.raises(ArchitectureError, match="shape"):
        space.to_text(np.zeros(space.spec.length + 1, np.int32))
    bad = np.zeros(space.spec.length, np.int32)
    bad[0] = space.spec.num_choices[0]
    with pytest.raises(ArchitectureError, match=space.spec.names[0]):
        space.decode(bad)
    with pytest.raises(ArchitectureError):
        space.network(bad, num_classes=2)
    with pytest.raises(ValueError, match="bogus"):
        make_space({"name": name, "bogus": 1})


def test_an_unknown_space_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="nasrl.*nb201"):
        make_space({"name": "nb202"})
