"""Validation of a whole config before a run touches its workdir or compiles anything.

:func:`check_search_config` (``experiments.search``, :func:`jnas.runner.run_search` and the
host loops) and :func:`check_train_config` (``experiments.train``,
:func:`jnas.runner.train.train`) raise one :class:`jnas.errors.ConfigError` that lists every
problem found, one line each, naming the key (``search.epochs``), the value (cut to a
readable length) and what it must be. They check:

* that the config is one the command runs: an evaluation config (``genotype``, ``train``)
  given to the search, a search config (``strategy``) given to the retraining, or a tabular
  config (``strategies``) given to either is refused with the command to use;
* types and ranges of the keys every config shares (:data:`RULES`: epochs, batch sizes,
  channels and layers >= 1, learning rates > 0 and finite, intervals and
  ``keep_checkpoints`` >= 1, probabilities in their interval, choices such as
  ``parallel``), wherever a config has them; an unknown value of a choice names the nearest;
* the data set's name (and that its ``source`` can read it), the runtime switches
  (:func:`jnas.ops.settings.request`), the genotype of a retraining;
* what the strategy and the space check themselves, through their own hooks, so that a new
  strategy or space adds checks without an edit here: a gradient strategy's
  ``GradientStrategy.check_config(config)`` and its ``stages(config)``, the one-shot space
  built from the config (its constructor), a discrete strategy's ``from_config`` /
  ``check_params`` and the space's constructor (``make_space``), the child training options.

Nothing here writes a file, starts a computation on a device or compiles: a refused config
leaves the workdir as it was (or absent).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

from jnas.errors import ConfigError, JnasError, clip
from jnas.ops.precision import COMPUTE_DTYPES

__all__ = [
    "RULES",
    "TABULAR_RULES",
    "Rule",
    "check_search_config",
    "check_tabular_config",
    "check_train_config",
]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


@dataclasses.dataclass(frozen=True)
class Rule:
    """``key`` (dotted, relative to the config), when present, must satisfy ``ok``;
    ``what`` says what it must be ("an integer >= 1")."""

    key: str
    what: str
    ok: Callable[[Any], bool]


def _int(lo: int | None = None) -> tuple[str, Callable]:
    if lo is None:
        return "an integer", _is_int
    return f"an integer >= {lo}", lambda v: _is_int(v) and v >= lo


def _optional_int(lo: int) -> tuple[str, Callable]:
    return f"None or an integer >= {lo}", lambda v: v is None or (_is_int(v) and v >= lo)


def _num(lo: float, *, strict: bool = False, hi: float | None = None, hi_open=True):
    lo_s = f"> {lo}" if strict else f">= {lo}"
    what = f"a finite number {lo_s}" if hi is None else None
    if hi is not None:
        what = f"a number in {'(' if strict else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def ok(v):
        if not _is_num(v) or (v <= lo if strict else v < lo):
            return False
        return hi is None or (v < hi if hi_open else v <= hi)

    return what, ok


def _bool(optional: bool = False) -> tuple[str, Callable]:
    if optional:
        return "None, True or False", lambda v: v is None or isinstance(v, bool)
    return "True or False", lambda v: isinstance(v, bool)


def _choice(*choices: str) -> tuple[str, Callable]:
    return f"one of {', '.join(repr(c) for c in choices)}", lambda v: v in choices


def _rules(spec: dict[str, tuple[str, Callable]]) -> tuple[Rule, ...]:
    return tuple(Rule(k, what, ok) for k, (what, ok) in spec.items())


# Keys of search, retraining and discrete-search configs; each is checked where a config has
# it (absent keys are the host loops' business: they use defaults or fail by name).
RULES: tuple[Rule, ...] = _rules(
    {
        "seed": _int(),
        "parallel": _choice("none", "pmap"),
        "progress": _bool(),
        "keep_checkpoints": _int(1),
        "checkpoint_every_steps": _int(1),
        "log_every_steps": _int(1),
        "eval_every_epochs": _int(0),
        "eval_batch_size": _int(1),
        "keep_best": _bool(),
        # data
        "data.source": _choice("auto", "tfds", "idx"),
        "data.train_portion": _num(0.0, strict=True, hi=1.0),
        "data.limit": _int(0),
        "data.test_limit": _int(0),
        "data.crop_padding": _optional_int(0),
        "data.flip": _bool(optional=True),
        "data.cutout_length": _int(0),
        # supernets and evaluation networks
        "model.C": _int(1),
        "model.layers": _int(1),
        "model.n_nodes": _int(1),
        "model.multiplier": _int(1),
        "model.stem_multiplier": _int(1),
        "model.vmap_edges": _bool(),
        "model.scan_edges": _bool(),
        "model.remat": _bool(),
        "model.network": _choice("cifar", "imagenet"),
        "model.auxiliary": _bool(),
        "model.scan_cells": _bool(),
        "model.compute_dtype": _choice(*COMPUTE_DTYPES),
        # one-shot search
        "search.epochs": _int(1),
        "search.batch_size": _int(1),
        "search.hypergradient": _choice("first", "fd", "exact"),
        "search.alpha_init_scale": _num(0.0),
        "search.arch_start_epoch": _int(0),
        "search.max_steps_per_epoch": _int(0),
        "search.fuse_phases": _bool(),
        "search.skip_warmup": _bool(),
        "optim_w.lr": _num(0.0, strict=True),
        "optim_w.lr_min": _num(0.0),
        "optim_w.momentum": _num(0.0, hi=1.0),
        "optim_w.weight_decay": _num(0.0),
        "optim_w.grad_clip": _num(0.0),
        "optim_alpha.lr": _num(0.0, strict=True),
        "optim_alpha.b1": _num(0.0, hi=1.0),
        "optim_alpha.b2": _num(0.0, hi=1.0),
        "optim_alpha.weight_decay": _num(0.0),
        "optim_alpha.grad_clip": _num(0.0),
        # retraining
        "optim.lr": _num(0.0, strict=True),
        "optim.lr_min": _num(0.0),
        "optim.schedule": _choice("cosine", "step"),
        "optim.decay_rate": _num(0.0, strict=True, hi=1.0, hi_open=False),
        "optim.decay_every_epochs": _int(1),
        "optim.momentum": _num(0.0, hi=1.0),
        "optim.nesterov": _bool(),
        "optim.weight_decay": _num(0.0),
        "optim.grad_clip": _num(0.0),
        "train.epochs": _int(1),
        "train.batch_size": _int(1),
        "train.auxiliary_weight": _num(0.0),
        "train.drop_path_prob": _num(0.0, hi=1.0),
        "train.label_smoothing": _num(0.0, hi=1.0),
        "train.max_steps_per_epoch": _int(0),
        "train.eval_every_epochs": _int(0),
        "train.eval_batch_size": _int(1),
        "train.stop_after_steps": _int(0),
        # discrete search with child training
        "search.rounds": _int(1),
        "search.children_per_round": _int(1),
        "search.num_devices": _int(0),
        "search.workers": _int(0),
        "child.num_steps": _int(1),
        "child.batch_size": _int(1),
        "child.eval_batch_size": _int(1),
        "child.learning_rate": _num(0.0, strict=True),
        "child.momentum": _num(0.0, hi=1.0),
        "child.weight_decay": _num(0.0),
        "child.num_classes": _int(0),
        "child.data_fraction": _num(0.0, strict=True, hi=1.0, hi_open=False),
        "child.width": _num(0.0, strict=True),
    }
)


class _Problems:
    """The problems found so far, each a line; raised together as one ConfigError."""

    def __init__(self, prefix: str):
        self.prefix, self.lines = prefix, []
        self.named: list[JnasError] = []  # the named errors the hooks raised

    def add(self, key: str | None, message: str) -> None:
        where = f"{self.prefix}{key}" if key else self.prefix.rstrip(".")
        self.lines.append(f"{where}: {message}" if where else message)

    def hook(self, what: str, fn: Callable, *args, **kw):
        """Run a strategy's or space's own check; a ValueError/TypeError/KeyError it raises
        becomes a problem line. Returns fn's result, or None when it raised."""
        try:
            return fn(*args, **kw)
        except JnasError as e:
            self.named.append(e)
            self.add(None, f"{what}: {_one_line(e)}")
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            self.add(None, f"{what}: {_one_line(e)}")
        return None

    def raise_if_any(self, command: str) -> None:
        if not self.lines:
            return
        if len(self.lines) == 1 and len(self.named) == 1:
            raise self.named[0]  # one problem, already a named error (e.g. a genotype's)
        if len(self.lines) == 1:
            raise ConfigError(f"invalid config for {command}: {self.lines[0]}")
        lines = "\n".join(f"  - {ln}" for ln in self.lines[:20])
        more = f"\n  ... and {len(self.lines) - 20} more" if len(self.lines) > 20 else ""
        raise ConfigError(
            f"invalid config for {command} ({len(self.lines)} problems):\n{lines}{more}"
        )


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return clip(" ".join(text.split()), 400)


def _get(config, dotted: str, default=None):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) and not hasattr(node, "keys"):
            return default
        if part not in node:
            return default
        node = node[part]
    return node


_MISSING = object()


def _check_rules(config, problems: _Problems, rules=RULES) -> None:
    for rule in rules:
        value = _get(config, rule.key, _MISSING)
        if value is _MISSING:
            continue
        if not rule.ok(value):
            hint = ""
            if isinstance(value, str) and "one of" in rule.what:
                choices = [c.strip("'") for c in rule.what[len("one of ") :].split(", ")]
                near = difflib.get_close_matches(value, choices, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.add(rule.key, f"{clip(value, 200)} is not {rule.what}{hint}")


def _require(config, keys, problems: _Problems) -> None:
    for key in keys:
        if _get(config, key, _MISSING) is _MISSING:
            problems.add(key, "missing (the config file must set it)")


def _check_data(config, problems: _Problems) -> None:
    name = _get(config, "data.name", _MISSING)
    if name is _MISSING:
        problems.add("data.name", "missing (the config file must set it)")
        return
    from jnas.data import sources

    try:
        info = sources.get_dataset_info(name)
    except (ValueError, TypeError, KeyError):
        known = list(sources.DATASETS)
        near = difflib.get_close_matches(str(name), known, n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        problems.add(
            "data.name", f"unknown data set {clip(name)!r}; {hint}known: {', '.join(known)}"
        )
        return
    if _get(config, "data.source") == "idx" and not info.supports_idx:
        problems.add(
            "data.source",
            f"'idx' cannot read {info.name} (IDX files exist for "
            f"{', '.join(n for n, i in sources.DATASETS.items() if i.supports_idx)}); use "
            "'auto' or 'tfds'",
        )


def _check_runtime(config, problems: _Problems) -> None:
    if "runtime" not in config or config.runtime is None:
        return
    from jnas.ops import settings

    problems.hook("runtime", settings.request, config.runtime)


def _kind_problem(config, command: str) -> str | None:
    """Why ``config`` is not a config of ``command`` ("search" or "train"), or None."""
    if not hasattr(config, "keys"):
        return f"the config is a {type(config).__name__}, not a ConfigDict"
    if "strategies" in config and "strategy" not in config:
        return (
            "this is a tabular-benchmark config (it has 'strategies'): run it with "
            "python -m experiments.tabular --config=..."
        )
    if command == "search" and "strategy" not in config:
        if "genotype" in config or "train" in config:
            return (
                "this is an evaluation (retraining) config: it has 'genotype' and 'train' and "
                "no 'strategy'. Retrain with python -m experiments.train --config=..., or give "
                "the search a search config (e.g. experiments/configs/darts_*.py)"
            )
        return "the config has no 'strategy': name a registered strategy (config.strategy)"
    if command == "train" and "genotype" not in config:
        if "strategy" in config or "search" in config:
            return (
                "this is a search config: it has 'strategy' and no 'genotype'. Run it with "
                "python -m experiments.search --config=..., or retrain with an evaluation "
                "config (e.g. experiments/configs/eval_*.py; a search retrains its cell "
                "itself with --config.retrain.enabled=true)"
            )
        return "the config has no 'genotype': set config.genotype (a name, text or file)"
    return None


def check_search_config(config, *, strategy=None, prefix: str = "") -> None:
    """Raise :class:`ConfigError` unless ``config`` is a valid search config.

    Args:
      config: the search config (``experiments/configs/darts_*.py``, ``nasrl_*.py``, ...).
      strategy: a discrete strategy class or object given to the host loop instead of
        ``config.strategy`` (then the name is not looked up).
      prefix: prepended to key names in messages (for nested configs).
    """
    problem = _kind_problem(config, "search")
    if problem:
        raise ConfigError(problem)
    problems = _Problems(prefix)
    _check_rules(config, problems)
    _require(config, ("seed",), problems)
    _check_data(config, problems)
    _check_runtime(config, problems)

    from jnas.strategies.base import kind_of

    name = config.strategy
    kind = "discrete" if strategy is not None else None
    if kind is None:
        if not isinstance(name, str):
            problems.add("strategy", f"{clip(name)} is not a strategy name (a string)")
        else:
            kind = problems.hook("strategy", kind_of, name)
    if kind == "gradient":
        _check_gradient(config, name, problems)
    elif kind == "shared":
        _check_shared(config, name, problems)
    elif kind == "discrete":
        _check_discrete(config, strategy, problems)
    elif kind == "morphism":  # network morphisms over the graph space (jnas.runner.morphism)
        _check_morphism(config, problems)
    elif kind is not None:
        problems.add(
            "strategy",
            f"{name!r} is of kind {kind!r}; searches run gradient, shared, discrete or morphism",
        )

    retrain = config.get("retrain")
    if retrain is not None and hasattr(retrain, "keys") and retrain.get("enabled", False):
        if "train" not in retrain:
            problems.add(
                "retrain",
                "retrain.enabled is true but config.retrain is not an evaluation config (it has "
                "no 'train' section): give it one, as experiments/configs/darts_fashion_mnist.py "
                "does, or leave retrain.enabled false",
            )
            problems.raise_if_any("experiments.search")
        sub = _Problems(f"{prefix}retrain.")
        _check_train(retrain, sub, genotype_given=True)
        problems.lines += sub.lines
        problems.named += sub.named
    problems.raise_if_any("experiments.search")


def _check_gradient(config, name: str, problems: _Problems) -> None:
    from jnas.strategies.oneshot import gradient_strategy, space_from_config

    _require(
        config, ("search.epochs", "search.batch_size", "optim_w.lr", "optim_alpha.lr"), problems
    )
    strategy = problems.hook("strategy", gradient_strategy, name)
    if strategy is None or problems.lines:
        return  # the space's and strategy's own checks need sane basic values
    problems.hook("the search space", space_from_config, config)
    before = len(problems.lines)
    check = getattr(strategy, "check_config", None)
    if check is not None:
        problems.hook(name, check, config)
    if strategy.stages is not None and len(problems.lines) == before:
        problems.hook(f"{name}'s stages", strategy.stage_configs, config)
    hyper = _get(config, "search.hypergradient", "first")
    if not strategy.second_order and hyper != "first" and len(problems.lines) == before:
        problems.add(
            "search.hypergradient",
            f"{name} updates alpha with a first-order gradient; {clip(hyper, 50)!r} is not "
            "supported (use 'first')",
        )
    epochs, start = _get(config, "search.epochs"), _get(config, "search.arch_start_epoch", 0)
    if _is_int(epochs) and _is_int(start) and epochs >= 1 and start >= epochs:
        problems.add(
            "search.arch_start_epoch",
            f"{start} >= search.epochs = {epochs}: alpha would never be trained (the genotype "
            "would come from its initial values)",
        )


def _check_shared(config, name: str, problems: _Problems) -> None:
    """A shared-weight (ENAS) search: its basic keys, then the strategy's own check (the
    controller's settings, the child's schedule, the space: ``check_config``)."""
    from jnas.strategies.enas import shared_strategy

    _require(
        config,
        ("space", "controller", "search.epochs", "search.batch_size", "optim_w.lr_max"),
        problems,
    )
    strategy = problems.hook("strategy", shared_strategy, name)
    if strategy is None or problems.lines:
        return
    if strategy.check_config is not None:
        problems.hook(name, strategy.check_config, config)


def _check_morphism(config, problems: _Problems) -> None:
    from jnas.runner.morphism import config_problems

    for key, message in problems.hook("strategy", config_problems, config) or ():
        problems.add(key, message)


def _check_discrete(config, strategy, problems: _Problems) -> None:
    from jnas.spaces.base import make_space

    _require(config, ("space", "search.rounds", "search.children_per_round"), problems)
    if problems.lines or "space" not in config:
        return  # the strategy's and space's own checks need sane basic values
    space = problems.hook("space", make_space, config.space)
    from jnas.runner.discrete import build_strategy, child_settings

    problems.hook("child", child_settings, config.get("child"))
    if space is not None:
        problems.hook(f"{config.get('strategy')}", build_strategy, config, space.spec, strategy)


def check_train_config(config, *, genotype=None, data=None, prefix: str = "") -> None:
    """Raise :class:`ConfigError` unless ``config`` is a valid evaluation (retraining) config.

    Args:
      config: the evaluation config (``experiments/configs/eval_*.py``).
      genotype: the genotype given to :func:`jnas.runner.train.train` (then
        ``config.genotype`` is not resolved).
      data: in-memory data given to ``train`` (then ``config.data.name`` is not checked).
      prefix: prepended to key names in messages (for nested configs).
    """
    problem = _kind_problem(config, "train") if genotype is None else None
    if problem is None and not hasattr(config, "keys"):
        problem = f"the config is a {type(config).__name__}, not a ConfigDict"
    if problem:
        raise ConfigError(problem)
    problems = _Problems(prefix)
    _check_train(config, problems, genotype_given=genotype is not None, data_given=data is not None)
    problems.raise_if_any("experiments.train")


def _check_train(config, problems: _Problems, *, genotype_given: bool, data_given=False) -> None:
    _check_rules(config, problems)
    _require(
        config,
        ("seed", "model.C", "model.layers", "train.epochs", "train.batch_size", "optim.lr"),
        problems,
    )
    if not data_given:
        _check_data(config, problems)
    _check_runtime(config, problems)
    if not genotype_given:
        from jnas.spaces.published import get_genotype

        g = _get(config, "genotype", _MISSING)
        if g is _MISSING or g is None:
            problems.add("genotype", "missing: a published name, a Genotype(...) text or a file")
        elif not isinstance(g, str):
            problems.add("genotype", f"{clip(g)} is not a name, text or path (a string)")
        elif config.get("space"):  # a space's own architecture (e.g. an ENAS macro network)
            from jnas.runner.train import space_architecture

            problems.hook("genotype", lambda text: space_architecture(config, text), g)
        else:
            problems.hook("genotype", get_genotype, g)


TABULAR_RULES: tuple[Rule, ...] = _rules(
    {
        "seed": _int(),
        "seeds": _int(1),
        "population_size": _int(1),
        "budget": _num(0.0, strict=True),
        "budget_unit": _choice("auto", "queries", "seconds"),
        "time_budget_s": (
            "None or a finite number > 0",
            lambda v: v is None or (_is_num(v) and v > 0),
        ),
    }
)


def check_tabular_config(config) -> None:
    """Raise :class:`ConfigError` unless ``config`` is a valid tabular-benchmark config
    (``experiments/configs/nb201.py``): the ranges of :data:`TABULAR_RULES`, a space with a
    table, registered discrete strategies with valid options, a non-empty list of data set
    names. The table itself (and so its data set names) is read by the run."""
    if not hasattr(config, "keys"):
        raise ConfigError(f"the config is a {type(config).__name__}, not a ConfigDict")
    if "strategies" not in config:
        hint = "search config" if "strategy" in config else "config"
        hint = "evaluation config" if "genotype" in config else hint
        raise ConfigError(
            f"this is a {hint}, not a tabular-benchmark config (it has no 'strategies'): run "
            "it with python -m experiments.search or experiments.train"
        )
    problems = _Problems("")
    _check_rules(config, problems, TABULAR_RULES)
    _require(config, ("space", "seed", "seeds", "budget", "datasets"), problems)
    strategies, datasets = config.get("strategies"), config.get("datasets")
    for key, value in (("strategies", strategies), ("datasets", datasets)):
        if value is not None and (
            isinstance(value, str)
            or not isinstance(value, (tuple, list))
            or not value
            or not all(isinstance(v, str) for v in value)
        ):
            problems.add(key, f"{clip(value)} is not a non-empty list of names")
    if problems.lines:
        problems.raise_if_any("experiments.tabular")
    from jnas.spaces.base import make_space
    from jnas.strategies.base import make_strategy

    space = problems.hook("space", make_space, config.space)
    if space is not None and not getattr(space, "has_table", False):
        problems.add("space.name", f"{config.space.name!r} has no table to search")
        space = None
    if space is not None:
        m = config.get("population_size", 1)
        for name in strategies:
            problems.hook(name, make_strategy, name, space.spec, m, config.get(name))
    problems.raise_if_any("experiments.tabular")
