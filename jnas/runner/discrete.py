"""The host loop of a discrete search with real child networks (NAS-RL, Zoph & Le, ICLR 2017).

Any discrete strategy (``jnas.strategies.base.DiscreteStrategy``: registered, named by
``config.strategy``, or passed in as a class or object) searches any space (``config.space``,
built by ``jnas.spaces.base.make_space``) whose children it trains with the space's
``train_child`` at the fidelity ``config.child`` describes. See
``experiments/configs/nasrl_fashion_mnist.py`` for every key.

Each round asks the strategy for one population of ``search.children_per_round`` (m)
architectures, looks each up in the history, trains the new ones on the search-train half of
the training set and scores them on the search-val half (the DARTS split,
``jnas.runner.data.load_search_data``); the reward is the validation accuracy. The new
children of a round are trained concurrently, one worker thread per local device
(``jax.default_device``), children assigned to devices round-robin; on one device they train
one after the other. The rewards, checked on the host, are told to the strategy in one
``tell`` in the order asked; ``tell``'s metrics are logged, and the strategy's state is
checkpointed after every round.

The workdir then holds:

* ``config.json``: the config of the run;
* ``history.jsonl``: a header line (``{"header": ...}``: what a reward depends on: space, child
  training, data, seed, strategy) and one row per trained child: ``round``, ``index`` (its
  place in the round's population), ``arch`` (the space's text form), ``reward``, ``params``,
  ``train_s``, ``device``. A child is written as soon as it is trained (before the round's
  checkpoint) and never trained again: a resumed run, which repeats the interrupted round's
  ask exactly, finds it there;
* ``checkpoints/``: orbax checkpoints of the strategy state, step = rounds done;
* ``metrics.jsonl`` and ``tb/``: per round the reward mean/min/max, the best reward so far,
  children trained, and the metrics of the strategy's ``tell`` (for REINFORCE the baseline
  and the entropy of the policy the population was sampled from);
* ``summary.json`` and ``best_arch.txt``: the best architecture found and its reward (and the
  child-epochs trained, see below).

Every random draw takes an explicit key: the strategy's init key is ``fold_in(key(seed), 0)``,
round r's ask ``fold_in(fold_in(key(seed), 1), r)`` (member k of the population: ``fold_in``
of that with k) and a child's training key ``fold_in(fold_in(key(seed), 2), hash(arch
text))``, so a child's reward is a function of its architecture and the seed, whichever device
trains it and whether the run was resumed.

**Multi-fidelity and early stopping.** A strategy with budgets (successive halving,
Hyperband, BOHB: ``jnas.strategies.base.budgets_of``) says after each ``ask`` at which budget
each member is judged (``fidelities_of``); the budget becomes a ``Fidelity``
(``jnas.strategies.base.to_fidelity``, from ``config.child``'s full fidelity and
the strategy's ``budget_resource``), every budget is checked against the space before
anything trains (``SearchSpace.check_fidelity``: ``FidelityError``), and each (architecture,
budget) is one evaluation, trained from scratch: its row has ``budget``, the history key is
``"<arch> @ <budget>"``, and the best architecture is chosen among evaluations at the
largest budget. ``config.early_stop`` (``enabled``, ``threshold`` (0.05), ``min_points``,
``families``, ``noise_floor``, raised to ``0.5 / sqrt(n)`` for n validation images: the
largest binomial standard error of an accuracy measured on them; the history header
records the value used; ``jnas.estimation.curves``) stops a child after an epoch when
its learning curve gives it a probability below ``threshold`` of beating the best reward
at its fidelity in the earlier rounds (earlier rounds only: the decision does not depend on
which child of a round finished first, so a resumed run makes it again); its reward is then
its last validation accuracy, and its row has ``stopped`` and ``curve``. Every row has
``steps`` and ``epochs`` (trained); ``summary.json`` sums them (``child_steps``,
``child_epochs``, in epochs of the full fidelity) against training every architecture
once at the full fidelity (``child_epochs_full``, ``child_epochs_saved``).

Bad input stops the run with a message naming the problem and leaves history and checkpoints
as they were: a fidelity the space cannot apply (``FidelityError``, before anything trains),
a non-finite reward (``NonFiniteRewardError``, naming the architecture), a
history row whose architecture does not parse or is not in the space, or a history or
checkpoint from another run (``IncompatibleCheckpointError``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from jnas.errors import EXIT_WORKDIR, JnasError
from jnas.estimation import curves
from jnas.runner import use_runtime
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError, write_json
from jnas.runner.data import load_search_data
from jnas.runner.errors import NonFiniteLossError, check_finite
from jnas.runner.progress import Progress
from jnas.runner.workdir import check_workdir, record_config
from jnas.runner.writers import MetricWriter, append_jsonl, read_jsonl, write_text
from jnas.spaces import child as child_lib
from jnas.spaces.base import Fidelity, make_space
from jnas.spaces.discrete import ArchitectureError
from jnas.strategies.base import (
    STRATEGIES,
    DiscreteStrategy,
    budgets_of,
    check_reward,
    fidelities_of,
    make_strategy,
    to_fidelity,
)

HISTORY = "history.jsonl"
_INIT, _ASK, _CHILD = 0, 1, 2  # key streams
# config.child keys that are the (full) fidelity's
_FIDELITY_KEYS = ("data_fraction", "width", "epochs", "resolution")
HINT = "Lower the strategy's learning rate (config.<strategy>) or check the rewards"


class NonFiniteRewardError(NonFiniteLossError):
    """A child's reward is NaN or infinite; the history and the last checkpoint are kept."""


class HistoryError(ValueError, JnasError):
    """``history.jsonl`` holds a row that is not a valid evaluated architecture."""

    exit_status = EXIT_WORKDIR


def child_settings(child_config) -> tuple[child_lib.ChildTrainConfig, Fidelity]:
    """``config.child`` -> the training config and the full fidelity (``data_fraction``,
    ``width``, ``epochs``, ``resolution``; without ``epochs`` the training config's
    ``num_steps`` is the budget)."""
    options = dict((child_config or {}).items())
    fidelity = Fidelity(**{k: options.pop(k) for k in _FIDELITY_KEYS if k in options})
    return child_lib.ChildTrainConfig.make(options), fidelity


def build_strategy(config: ml_collections.ConfigDict, spec, strategy=None):
    """``(strategy object, params, name, options)`` for a population of m =
    ``search.children_per_round``.

    Args:
      config: the run's config; ``config.strategy`` names a registered strategy (or
        ``"pkg.module:Class"``) and ``config.<that name>``, if present, holds its options
        (static ones and params, see ``jnas.strategies.base.make_strategy``).
      spec: the space's decisions.
      strategy: None (build ``config.strategy``), a ``DiscreteStrategy`` subclass (built
        with the options of ``config.<config.strategy>`` when that name is this class, else
        with its defaults), or an object (used as it is, with its ``default_params``; its
        ``population_size`` must be m).

    Returns:
      ``name`` is ``config.strategy``, or ``"module:Class"`` for a class or object passed
      in; ``options`` the config section used (a dict, empty if none).
    """
    m = int(config.search.children_per_round)
    named = config.get("strategy")
    section = config.get(named) if isinstance(named, str) and named.isidentifier() else None
    options = dict(section.items()) if section is not None else {}
    if strategy is None:
        obj, params = make_strategy(named, spec, m, section)
        return obj, params, named, options
    cls = strategy if isinstance(strategy, type) else type(strategy)
    name = f"{cls.__module__}:{cls.__qualname__}"
    if isinstance(strategy, type):
        if not (isinstance(named, str) and named in STRATEGIES and STRATEGIES.get(named) is cls):
            section, options = None, {}
        obj, params = make_strategy(strategy, spec, m, section)
        return obj, params, name, options
    if not isinstance(strategy, DiscreteStrategy) and not all(
        callable(getattr(strategy, f, None)) for f in ("init", "ask", "tell")
    ):
        raise TypeError(f"{strategy!r} has no init/ask/tell: not a discrete strategy")
    if int(getattr(strategy, "population_size", m)) != m:
        raise ValueError(
            f"the strategy's population_size = {strategy.population_size} must equal "
            f"search.children_per_round = {m}"
        )
    return strategy, strategy.default_params, name, {}


def budget_fidelities(strategy, fidelity: Fidelity) -> dict:
    """``{budget: the Fidelity a child is trained at}``: ``{None: fidelity}`` for a strategy
    without budgets, and each budget of a multi-fidelity one (``to_fidelity`` of the full
    ``fidelity`` by its ``budget_resource``)."""
    out = {None: fidelity}
    budgets = budgets_of(strategy)
    if budgets is not None:
        resource = getattr(strategy, "budget_resource", "epochs")
        for b in budgets:
            out[b] = to_fidelity(fidelity, resource, b, budgets[-1])
    return out


def child_key(seed: int, text: str) -> jax.Array:
    """The training key of the child with architecture ``text``."""
    digest = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), _CHILD), digest)


def _jsonable(obj) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=list))


def history_header(
    config, space, child_cfg, fidelity, strategy_name, options, stopper=None
) -> dict:
    """What a reward depends on; a history with another header belongs to another run.

    The fidelity's fields are written only where they are not the full fidelity's
    (``Fidelity.changes``), the early stop only where it is on.
    """
    d = config.data
    child = dataclasses.asdict(child_cfg)
    child.update(fidelity.changes())
    extra = {"early_stop": dataclasses.asdict(stopper)} if stopper is not None else {}
    return _jsonable(
        {
            **extra,
            "space": space.options(),
            "child": child,
            "data": {"name": d.name, "train_portion": d.train_portion, "limit": d.limit},
            "seed": int(config.seed),
            "children_per_round": int(config.search.children_per_round),
            "strategy": strategy_name,
            "strategy_options": options,
        }
    )


class History:
    """The evaluated children of a search, by architecture text, mirrored in ``history.jsonl``."""

    def __init__(self, path: str, header: dict | None, space, *, check_header: bool = True):
        self.path, self.header, self.space = path, header, space
        self.check_header = check_header  # False: read a history whatever run it is of
        self.rows: list[dict] = []
        self.by_arch: dict[str, dict] = {}
        self._has_header = False  # the file is written from the first trained child on
        if os.path.exists(path):
            self._load()

    def _load(self) -> None:
        # A row cut short by a kill while it was written is dropped from the file.
        rows = read_jsonl(self.path, repair=True, error=HistoryError)
        if not rows:
            return
        first = rows[0]
        if "header" not in first:
            raise HistoryError(
                f"{self.path} line 1 is not a history header: {json.dumps(first)[:200]}"
            )
        if self.check_header and first["header"] != self.header:
            diff = _diff(first["header"], self.header)
            raise IncompatibleCheckpointError(
                f"{self.path} is the history of another search (it differs from this run in "
                f"{diff}); use another --workdir, or remove the workdir to start afresh"
            )
        self._has_header = True
        for number, row in enumerate(rows[1:], start=2):
            self._add(self._check_row(row, number))

    def _check_row(self, row: dict, number: int) -> dict:
        where = f"{self.path} line {number}"
        missing = [k for k in ("round", "index", "arch", "reward") if k not in row]
        if missing:
            raise HistoryError(f"{where} lacks {missing}: {json.dumps(row)[:200]}")
        try:
            text = self.space.to_text(self.space.parse(row["arch"]))
        except ArchitectureError as e:
            raise HistoryError(f"{where}: {e}") from e
        try:
            reward = check_reward(row["reward"])
        except ValueError as e:
            raise HistoryError(f"{where}, architecture {row['arch']!r}: {e}") from e
        row = dict(row, arch=text, reward=reward)
        if history_key(row) in self.by_arch:
            raise HistoryError(
                f"{where}: architecture {history_key(row)!r} is already in the history"
            )
        return row

    def _append(self, row: dict) -> None:
        append_jsonl(self.path, row, sync=True)

    def _add(self, row: dict) -> None:
        self.rows.append(row)
        self.by_arch[history_key(row)] = row

    def add(self, row: dict) -> None:
        """Record a newly trained child (file first, then memory)."""
        if not self._has_header:
            self._append({"header": self.header})
            self._has_header = True
        self._append(row)
        self._add(row)

    def best(self, last_round: int | None = None, budget: float | None = None) -> dict | None:
        """The row with the highest reward (the earliest among ties), up to ``last_round``;
        with ``budget``, among the rows judged at that budget (None if there is none)."""
        rows = [r for r in self.rows if last_round is None or r["round"] <= last_round]
        if budget is not None:
            rows = [r for r in rows if r.get("budget") == budget]
        return max(rows, key=lambda r: r["reward"], default=None)

    def incumbent(self, last_round: int | None = None, budgets=None) -> dict | None:
        """The best row: at the largest budget that has one (multi-fidelity), else overall."""
        for budget in reversed(budgets or ()):
            best = self.best(last_round, budget)
            if best is not None:
                return best
        return self.best(last_round)

    def __len__(self) -> int:
        return len(self.rows)


def _diff(saved: dict, wanted: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(saved) | set(wanted)):
        a, b = saved.get(k), wanted.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} there, {b!r} here")
    return out


def history_key(row: dict) -> str:
    """A row's key in the history: its architecture text, ``"<text> @ <budget>"`` for a
    multi-fidelity evaluation (each budget is its own evaluation)."""
    return row["arch"] if row.get("budget") is None else f"{row['arch']} @ {row['budget']:g}"


class _Trainer:
    """Trains children on the local devices: a thread per device, round-robin."""

    def __init__(self, config, space, child_cfg, fidelity, train, val):
        self.config, self.space = config, space
        self.child_cfg, self.fidelity = child_cfg, fidelity
        self.train, self.val = train, val
        n = int(config.search.get("num_devices", 0)) or jax.local_device_count()
        if n > jax.local_device_count():
            raise ValueError(
                f"search.num_devices = {n} but only {jax.local_device_count()} local devices"
            )
        self.devices = jax.local_devices()[:n]
        self.workers = int(config.search.get("workers", 0)) or n

    def _one(self, job: tuple, device) -> dict:
        text, arch, fidelity, monitor = job
        t0 = time.time()
        with jax.default_device(device):
            out = self.space.train_child(
                arch,
                self.train,
                self.val,
                fidelity=fidelity,
                config=self.child_cfg,
                key=child_key(self.config.seed, text),
                **({"monitor": monitor} if monitor is not None else {}),
            )
        result = {"train_s": round(time.time() - t0, 2), "device": device.id}
        if isinstance(out, child_lib.ChildResult):
            result.update(reward=out.accuracy, steps=out.steps, epochs=out.epochs)
            if out.stopped:
                result.update(stopped=True, curve=list(out.curve))
        else:  # a space's own train_child, or no monitor: trained as planned
            steps, per_epoch = child_lib.planned_steps(
                self.child_cfg, fidelity, self.train[0].shape[0]
            )
            result.update(reward=out, steps=steps, epochs=steps / per_epoch)
        return result

    def run(self, todo: list[tuple[int, str, tuple]], on_done) -> None:
        """Trains ``todo`` = [(index, key, (text, arch, fidelity, monitor))], calling
        ``on_done(index, key, result)`` in the order of ``todo`` (``on_done`` may raise:
        children still training finish and are passed to ``on_done`` first, children not
        started are dropped)."""
        jobs = [
            (i, key, job, self.devices[j % len(self.devices)])
            for j, (i, key, job) in enumerate(todo)
        ]
        if self.workers == 1 or len(jobs) <= 1:
            for i, key, job, device in jobs:
                on_done(i, key, self._one(job, device))
            return
        error = None
        with concurrent.futures.ThreadPoolExecutor(self.workers) as pool:
            futures = [(i, key, pool.submit(self._one, job, d)) for i, key, job, d in jobs]
            for i, key, future in futures:
                if error is not None:
                    future.cancel()  # only if it has not started
                try:
                    result = future.result()
                    if error is None or _is_finite(result["reward"]):
                        on_done(i, key, result)
                except concurrent.futures.CancelledError:
                    pass
                except Exception as e:
                    error = error or e
        if error is not None:
            raise error


def _is_finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _strategy_record(metrics, taken) -> dict:
    """``tell``'s metrics as host scalars; a name the runner uses gets a ``strategy/`` prefix."""
    out = {}
    for name, value in jax.device_get(dict(metrics or {})).items():
        out[f"strategy/{name}" if name in taken else name] = np.asarray(value).tolist()
    return out


def search(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    strategy=None,
    allow_config_change: bool = False,
) -> dict:
    """Run (or resume) a discrete search with real child training.

    Args:
      config: e.g. ``experiments/configs/nasrl_fashion_mnist.py``.
      workdir: where the history, checkpoints and metrics go; a rerun resumes from it.
      strategy: None to build ``config.strategy`` from the registry, or a
        ``DiscreteStrategy`` class or object (see :func:`build_strategy`), registered or not.
      allow_config_change: continue a workdir whose ``config.json`` differs from ``config``
        in keys that change the results (:mod:`jnas.runner.workdir`).

    Returns:
      The summary (also in ``summary.json``): the best architecture (``best_arch``, text) and
      its ``best_reward``, ``num_trained`` (children trained), ``num_asked``, rounds, devices.

    The run is inside ``jnas.runner.use_runtime(config)``: ``config.json`` records the
    runtime switches (native kernels, XLA options) the children were compiled with.
    """
    from jnas.validate import check_search_config

    check_search_config(config, strategy=strategy)
    with use_runtime(config) as (config, _):
        check_workdir(config, workdir, allow_config_change=allow_config_change)
        return _search(config, workdir, strategy)


def _search(config: ml_collections.ConfigDict, workdir: str, strategy) -> dict:
    space = make_space(config.space)
    m, rounds = int(config.search.children_per_round), int(config.search.rounds)
    if m < 1 or rounds < 0:
        raise ValueError(f"need children_per_round >= 1 and rounds >= 0, got {m}, {rounds}")
    strategy, params, strategy_name, options = build_strategy(config, space.spec, strategy)
    child_cfg, fidelity = child_settings(config.child)
    stopper = curves.stopper_from_config(config.get("early_stop"))
    budgets = budgets_of(strategy)
    budget_fidelity = budget_fidelities(strategy, fidelity)
    info, train, val = load_search_data(config)
    if not child_cfg.num_classes:
        child_cfg = dataclasses.replace(child_cfg, num_classes=info.num_classes)
    image_shape = train[0].shape[1:]  # [H, W, C]
    for fid in budget_fidelity.values():  # FidelityError before anything is trained
        space.check_fidelity(fid, image_shape)
    if stopper is not None:  # no curve is known better than its validation set measures it
        floor = 0.5 / math.sqrt(len(val[1]))
        stopper = dataclasses.replace(stopper, noise_floor=max(stopper.noise_floor, floor))
    full_steps, full_per_epoch = child_lib.planned_steps(
        child_cfg, budget_fidelity[budgets[-1] if budgets else None], train[0].shape[0]
    )

    root = jax.random.key(config.seed)
    init = jax.jit(strategy.init)
    init_key = jax.random.fold_in(root, _INIT)
    os.makedirs(workdir, exist_ok=True)  # after the space's, strategy's and data's checks
    ckpt = Checkpointer(workdir, max_to_keep=config.get("keep_checkpoints", 2), hint=HINT)
    done, meta = ckpt.latest_step() or 0, {}
    if done:  # restore into the abstract state: nothing compiles
        state, meta = ckpt.restore(jax.eval_shape(init, init_key, params))
        print(f"resuming from round {done} in {workdir}", flush=True)
    else:
        state = init(init_key, params)
    record_config(config, workdir)  # after the checkpoint's check: an allowed change is recorded
    header = history_header(config, space, child_cfg, fidelity, strategy_name, options, stopper)
    history = History(os.path.join(workdir, HISTORY), header, space)
    if len(history) < meta.get("num_trained", 0):
        raise IncompatibleCheckpointError(
            f"{history.path} has {len(history)} children but the checkpoint of round {done} "
            f"recorded {meta['num_trained']}: the history was truncated or replaced. Restore it, "
            "or remove the workdir to start afresh."
        )

    trainer = _Trainer(config, space, child_cfg, fidelity, train, val)
    ask, tell = jax.jit(strategy.ask), jax.jit(strategy.tell)
    writer = MetricWriter(workdir, resume_step=done if done else None)
    progress = Progress(
        rounds * m, min(done, rounds) * m, enabled=config.progress, desc=str(strategy_name)
    )

    def monitor_for(budget, r):
        """The early-stop monitor of a child at ``budget`` in round ``r`` (or None): the best
        so far is the best reward at that budget of the rounds before ``r``, not stopped."""
        if stopper is None:
            return None
        done_rows = [
            row
            for row in history.rows
            if row["round"] < r and row.get("budget") == budget and not row.get("stopped")
        ]
        best = max((row["reward"] for row in done_rows), default=None)
        return lambda curve, planned: stopper.should_stop(curve, best, planned)

    def count_params(arch) -> int:
        model = space.network(arch, num_classes=child_cfg.num_classes, fidelity=fidelity)
        return child_lib.count_params(model, image_shape)

    t0 = time.time()
    for r in range(done, rounds):
        t_round = time.time()
        round_key = jax.random.fold_in(jax.random.fold_in(root, _ASK), r)
        archs, state = ask(round_key, state, params)
        archs = np.asarray(archs)
        if archs.shape != (m, space.spec.length):
            raise ValueError(
                f"the strategy asked for archs of shape {archs.shape}, expected "
                f"({m}, {space.spec.length})"
            )
        texts = [space.to_text(a) for a in archs]
        levels = fidelities_of(strategy, state)
        member_budgets = [budgets[int(i)] for i in np.asarray(levels)] if budgets else [None] * m
        keys = [history_key({"arch": t, "budget": b}) for t, b in zip(texts, member_budgets)]
        todo, seen = [], set()
        for k, (key, text, arch, b) in enumerate(zip(keys, texts, archs, member_budgets)):
            if key not in history.by_arch and key not in seen:
                seen.add(key)
                todo.append((k, key, (text, arch, budget_fidelity[b], monitor_for(b, r))))

        def on_done(k, key, result, r=r):
            text = texts[k]
            try:
                reward = check_reward(result["reward"])
            except ValueError as e:
                raise NonFiniteRewardError(
                    f"child {key!r} (round {r}, index {k}) has reward {result['reward']}: {e}. "
                    f"{history.path} keeps the {len(history)} children evaluated so far and the "
                    f"last checkpoint (round {ckpt.latest_step() or 0}) is untouched; rerun to "
                    "resume (trained children are not trained again)."
                ) from None
            row = dict(round=r, index=k, arch=text, reward=reward, params=count_params(archs[k]))
            if member_budgets[k] is not None:
                row["budget"] = member_budgets[k]
            row.update(steps=result["steps"], epochs=round(result["epochs"], 6))
            if result.get("stopped"):
                row.update(stopped=True, curve=result["curve"])
            history.add(dict(row, train_s=result["train_s"], device=result["device"]))
            progress.update(r * m + k + 1)

        trainer.run(todo, on_done)
        rewards = [history.by_arch[key]["reward"] for key in keys]
        record = {
            "reward_mean": float(np.mean(rewards)),
            "reward_min": float(np.min(rewards)),
            "reward_max": float(np.max(rewards)),
            # Children first trained in this round (also those trained before a kill).
            "num_new": sum(history.by_arch[key]["round"] == r for key in set(keys)),
            "num_trained": len(history),
        }
        state, metrics = tell(state, archs, np.asarray(rewards, np.float32), params)
        # The strategy's state after tell (a controller's weights): nothing of this round is
        # written if it went NaN or infinite (Checkpointer.save checks it again).
        check_finite(
            {"the strategy state after tell": state},
            step=r,
            workdir=workdir,
            last_checkpoint=ckpt.latest_step(),
            hint=HINT,
            unit="round",
        )
        record.update(_strategy_record(metrics, {*record, "best_reward", "round_s"}))
        record["num_stopped"] = sum(bool(row.get("stopped")) for row in history.rows)
        best = history.incumbent(last_round=r, budgets=budgets)
        record["best_reward"] = best["reward"]
        record["round_s"] = round(time.time() - t_round, 1)
        writer.write(r + 1, "round", record)
        writer.write_text(r + 1, "best_arch", best["arch"])
        writer.flush()
        ckpt.save(r + 1, state, {"round": r + 1, "num_trained": len(history)})
        progress.update((r + 1) * m)
        progress.write(
            f"round {r + 1}/{rounds}: {record['num_new']} new, reward mean "
            f"{record['reward_mean']:.4f} max {record['reward_max']:.4f}; best "
            f"{best['reward']:.4f} {best['arch']}"
        )
    progress.close()
    writer.close()
    ckpt.close()

    best = history.incumbent(budgets=budgets)
    done = max(done, rounds)
    num_archs = len({row["arch"] for row in history.rows})
    child_steps = sum(int(row.get("steps", 0)) for row in history.rows)
    summary = {
        "strategy": strategy_name,
        "space": space.name,
        "best_arch": best["arch"] if best else None,
        "best_reward": best["reward"] if best else None,
        "best_round": best["round"] if best else None,
        "rounds": done,
        "children_per_round": m,
        "num_asked": done * m,
        "num_trained": len(history),
        "train_s_total": round(sum(row.get("train_s", 0.0) for row in history.rows), 1),
        # The cost in optimizer steps and in epochs of the full fidelity, against training
        # each architecture once at the full fidelity without early stopping.
        "num_archs": num_archs,
        "num_stopped": sum(bool(row.get("stopped")) for row in history.rows),
        "child_steps": child_steps,
        "child_steps_full": num_archs * full_steps,
        "child_epochs": round(child_steps / full_per_epoch, 3),
        "child_epochs_full": round(num_archs * full_steps / full_per_epoch, 3),
        "child_epochs_saved": round((num_archs * full_steps - child_steps) / full_per_epoch, 3),
        "search_wall_s": round(time.time() - t0, 1),
        "devices": len(trainer.devices),
    }
    if best:
        write_text(os.path.join(workdir, "best_arch.txt"), best["arch"] + "\n")
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary
