"""The host loop of a search over network morphisms (Auto-Keras: Jin, Song & Hu, KDD 2019).

A ``"morphism"`` strategy (:mod:`jnas.strategies.morphism_bo`: ``morphism_bo``, the
baselines ``morphism_walk`` and ``graph_random``) searches the graph space
(``config.space``, :mod:`jnas.spaces.graph`). See
``experiments/configs/morphism_bo_fashion_mnist.py`` for every key.

Round 0 trains the space's start network from scratch. Each later round asks the strategy
for ``search.children_per_round`` (m) children, from every network trained in the earlier
rounds: a child is a parent's id, the edits that lead from it, and the child graph. The
parent's trained variables are read from the workdir and morphed edit by edit
(:func:`jnas.spaces.morphism.morph_variables`: the child starts computing its parent's
function), and the child trains at ``config.child``'s fidelity on the search-train half and
is scored on the search-val half (the DARTS split, :func:`jnas.runner.data.load_search_data`);
a child without parent (random search) starts from a fresh initialisation. The children of a
round train concurrently, one per local device (:class:`jnas.runner.discrete._Trainer`), and
``config.early_stop`` stops a child whose learning curve gives it too small a probability of
beating the best of the earlier rounds (:mod:`jnas.estimation.curves`, as the discrete loop).

**Multi-fidelity** (``config.search.schedule``: ``"hyperband"`` or ``"successive_halving"``,
options in the config section of that name; :mod:`jnas.strategies.morphism_hyperband`).
``morphism_bo`` with ``hyperband`` is **BOHB over morphisms**. Round 0 trains the start
network at the largest budget; each later round is one rung of Hyperband's brackets (Li et
al., Algorithm 1), and ``search.rounds`` counts rungs. A bracket's first rung asks the strategy
for its new networks, showing it only the networks evaluated at the *model budget* (the
largest budget with ``min_points_in_model`` evaluations, as BOHB fits its TPE; else the
largest with any) and excluding every architecture evaluated; each later rung promotes the
best 1/eta by reward of the previous rung to the next budget. A promoted network retrains
from its parent's morphed weights at the larger budget (each evaluation from the same start,
as HpBandSter; the reasons are in that module's docstring): its row repeats its parent and
edits, with ``promoted_from``. Each budget becomes the ``Fidelity`` the child trains at
(:func:`jnas.strategies.base.to_fidelity` of ``config.child``'s full fidelity), checked
against the space before anything trains; the curve stop compares a child with the best
reward at its budget of the earlier rounds (not stopped), as the discrete loop; the best
network is the best at the largest budget (``History.incumbent``).

The workdir then holds:

* ``config.json``;
* ``history.jsonl``: the header (what a reward depends on, as the discrete loop's) and one row
  per trained network: ``id`` (0, 1, ... in training order), ``round``, ``index`` (its place
  among the round's proposals), ``parent`` (an id, or null), ``edits`` (their text, in
  order), ``arch`` (the graph's text), ``reward`` (validation accuracy), ``params``,
  ``steps``, ``epochs`` (and ``stopped``, ``curve`` when the curve stop ended it; with a
  schedule ``budget``, ``bracket`` (its number in the run), ``rung`` and, for a promoted
  network, ``promoted_from``; the history key is then ``"<arch> @ <budget>"``), what the
  strategy knew (``acq``: the UCB, the GP's mean and standard deviation, the search's counts),
  and its costs: ``train_s``, ``morph_s`` (reading and morphing the parent's variables),
  ``propose_s`` (the round's proposal, on its first child), ``wall_s`` (seconds of search
  since the start, summed over resumed runs) and ``device``;
* ``checkpoints/``: step ``id + 1`` holds network ``id``'s trained variables (orbax, through
  :class:`jnas.runner.checkpoint.Checkpointer`, all kept: any trained network may become a
  parent) and its history row; a network is checkpointed first, then written to the history;
* ``metrics.jsonl`` and ``tb/``: per round the best reward so far (with a schedule: at the
  largest budget), networks trained, the round's best (and budget), the acquisition's values;
* ``summary.json`` (with ``child_epochs``, the training spent in epochs of the full
  fidelity, against ``child_epochs_full``, every network once at it), ``best_arch.txt`` and
  ``best_graph/`` (pictures of the best network's graph,
  :meth:`jnas.spaces.graph.GraphSpace.draw`); with ``search.test_best`` the best network's
  test accuracy (its searched weights, on ``data.test_limit`` test images).

A strategy keeps no state of its own: round r's proposals are a function of the networks of
rounds < r and of the key ``fold_in(fold_in(key(seed), 1), r)``, a child's training key is
``fold_in(fold_in(key(seed), 2), hash(graph text))`` and its morphing key the same with
stream 3, so a run killed at any point (SIGKILL included) and rerun repeats the interrupted
round and skips the networks already in the history: its history equals an uninterrupted
run's, rewards and GP values bit for bit (with a schedule too: a rung's promotions are a
function of the previous round's rows, which finished before it). A network checkpointed
but not yet in the history (a kill between the two writes) is added to the history from its
checkpoint on resume.

Bad input stops the run with a named error and leaves the history and checkpoints as they
were: a config out of range (``ConfigError``, before anything compiles), a non-finite reward
(:class:`jnas.runner.discrete.NonFiniteRewardError`) or non-finite trained weights
(``NonFiniteLossError``), a NaN in a child's learning curve (``CurveError``, naming the
network), a history row that does not parse, is over the space's limits or holds a curve
that is not one (``HistoryError``), a schedule out of range (eta <= 1, a minimum budget above
the maximum, a ladder whose epochs round to equal values, budgets of ``width``, which a child
inheriting its parent's variables cannot vary: ``ConfigError``, before anything compiles), a
budget the space cannot apply (``FidelityError``, before anything trains), a history of
another run or one whose networks have no checkpoint (``IncompatibleCheckpointError``), an
edit at a layer that does not exist or over a limit (the space's ``GraphError``).

:func:`retrain` (``python -m experiments.train`` with a morphism config) retrains a graph
(default: the search's ``best_arch.txt``) from scratch on the training set and tests it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jnas.errors import ConfigError
from jnas.estimation import curves
from jnas.runner import discrete, use_runtime
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError, write_json
from jnas.runner.data import load_search_data
from jnas.runner.discrete import History, NonFiniteRewardError, child_key, child_settings
from jnas.runner.progress import Progress
from jnas.runner.workdir import check_workdir, record_config
from jnas.runner.writers import MetricWriter, write_text
from jnas.spaces.base import make_space
from jnas.strategies.base import check_reward, to_fidelity
from jnas.strategies.morphism_hyperband import (
    MorphismSchedule,
    model_rows,
    parse_edit,
    schedule_problems,
)

HISTORY = discrete.HISTORY
_INIT, _ASK, _CHILD, _MORPH = 0, 1, 2, 3  # key streams (_CHILD: discrete.child_key's)
HINT = "Lower config.child.learning_rate or check the data"


def _strategy(config):
    from jnas.strategies.morphism_bo import morphism_strategy

    cls = morphism_strategy(config.strategy)
    return cls.from_config(config.get(config.strategy))


def config_problems(config) -> list[tuple[str, str]]:
    """``[(key, problem)]`` of a morphism search config beyond the shared rules of
    :mod:`jnas.validate` (which calls this before anything is written or compiled)."""
    from jnas.strategies.morphism_bo import morphism_strategy

    out = []
    for key in ("space", "search.rounds", "search.children_per_round"):
        node = config
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        if node is None:
            out.append((key, "missing (the config file must set it)"))
    if out:
        return out
    try:
        cls = morphism_strategy(config.strategy)
    except (ValueError, KeyError) as e:
        return [("strategy", str(e))]
    section = config.get(config.strategy)
    options = dict(section.items()) if section is not None else {}
    out += [(f"{config.strategy}.{k}", m) for k, m in cls.option_problems(options)]
    try:
        space = make_space(config.space)
    except (ValueError, TypeError, KeyError) as e:
        out.append(("space", str(e)))
        space = None
    if space is not None and not callable(getattr(space, "random_graph", None)):
        out.append(("space.name", f"{space.name!r} is not a graph space searched by morphisms"))
    try:
        child_settings(config.get("child"))
    except (ValueError, TypeError) as e:
        out.append(("child", str(e)))
    try:
        curves.stopper_from_config(config.get("early_stop"))
    except ValueError as e:
        out.append(("early_stop", str(e)))
    out += schedule_problems(config)
    budget = config.search.get("time_budget_s")
    if budget is not None and (
        isinstance(budget, bool)
        or not isinstance(budget, (int, float))
        or not math.isfinite(budget)
        or budget <= 0
    ):
        out.append(("search.time_budget_s", f"{budget!r} is not None or a finite number > 0"))
    if space is not None and "data" in config and config.data.get("name"):
        from jnas.data import sources

        try:
            info = sources.get_dataset_info(config.data.name)
        except (ValueError, KeyError):
            info = None  # named by the shared data check
        if info is not None and space.input_channels != info.image_shape[-1]:
            out.append(
                (
                    "space.input_channels",
                    f"{space.input_channels} but {info.name} images have "
                    f"{info.image_shape[-1]} channels (the size limit is counted for them)",
                )
            )
        if info is not None and space.num_classes != info.num_classes:
            out.append(
                (
                    "space.num_classes",
                    f"{space.num_classes} but {info.name} has {info.num_classes} classes",
                )
            )
    return out


class _Trainer(discrete._Trainer):
    """The discrete loop's trainer (a thread per device, results in order); a job here also
    carries the variables a child starts from, and the trained variables come back."""

    def _one(self, job: tuple, device) -> dict:
        text, graph, fidelity, monitor, init_variables = job
        t0 = time.time()
        with jax.default_device(device):
            out = self.space.train_child(
                graph,
                self.train,
                self.val,
                fidelity=fidelity,
                config=self.child_cfg,
                key=child_key(self.config.seed, text),
                monitor=monitor,
                init_variables=init_variables,
                return_variables=True,
            )
        result = {
            "train_s": round(time.time() - t0, 2),
            "device": device.id,
            "reward": out.accuracy,
            "steps": out.steps,
            "epochs": out.epochs,
            "variables": jax.device_get(out.variables),
        }
        if out.stopped:
            result.update(stopped=True, curve=list(out.curve))
        return result


def _abstract_variables(space, graph, num_classes, fidelity, image_shape):
    model = space.network(graph, num_classes=num_classes, fidelity=fidelity)
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x)


def search(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change=False) -> dict:
    """Run (or resume) a morphism search; returns the summary (also ``summary.json``):
    ``best_arch`` (text), ``best_reward``, ``best_id``, ``num_trained``, ``rounds``, ...

    Raises:
      jnas.errors.ConfigError: an invalid config (every problem named), before anything runs.
    """
    from jnas.validate import check_search_config

    check_search_config(config)
    with use_runtime(config) as (config, _):
        check_workdir(config, workdir, allow_config_change=allow_config_change)
        return _search(config, workdir)


def _schedule(config) -> MorphismSchedule | None:
    """The multi-fidelity schedule of ``config.search.schedule`` (None: every child at the
    full fidelity)."""
    name = config.search.get("schedule")
    if name is None:
        return None
    m = int(config.search.children_per_round)
    return MorphismSchedule.from_config(name, config.get(name), m)


def _search(config, workdir: str) -> dict:
    from jnas.spaces import child as child_lib
    from jnas.spaces import morphism
    from jnas.strategies.morphism_bo import Proposal, Trained

    space = make_space(config.space)
    strategy, name = _strategy(config), config.strategy
    m, rounds = int(config.search.children_per_round), int(config.search.rounds)
    budget_s = config.search.get("time_budget_s")
    child_cfg, fidelity = child_settings(config.child)
    stopper = curves.stopper_from_config(config.get("early_stop"))
    schedule = _schedule(config)
    budgets = schedule.budgets if schedule is not None else None
    if schedule is None:
        fidelities = {None: fidelity}
    else:  # each budget's Fidelity (FidelityError for a budget outside the ladder)
        resource = schedule.budget_resource
        fidelities = {b: to_fidelity(fidelity, resource, b, budgets[-1]) for b in budgets}
    top_budget = budgets[-1] if budgets else None
    info, train, val = load_search_data(config)
    if not child_cfg.num_classes:
        child_cfg = dataclasses.replace(child_cfg, num_classes=info.num_classes)
    num_classes, image_shape = child_cfg.num_classes, train[0].shape[1:]
    for fid in fidelities.values():  # FidelityError before anything is trained
        space.check_fidelity(fid, image_shape)
    full_steps, full_per_epoch = child_lib.planned_steps(
        child_cfg, fidelities[top_budget], train[0].shape[0]
    )
    if stopper is not None:
        floor = 0.5 / math.sqrt(len(val[1]))
        stopper = dataclasses.replace(stopper, noise_floor=max(stopper.noise_floor, floor))

    root = jax.random.key(config.seed)
    os.makedirs(workdir, exist_ok=True)
    ckpt = Checkpointer(workdir, max_to_keep=None, hint=HINT)
    record_config(config, workdir)
    header = discrete.history_header(
        config, space, child_cfg, fidelity, name, strategy.options(), stopper
    )
    if schedule is not None:
        header["schedule"] = schedule.header()
    history = History(os.path.join(workdir, HISTORY), header, space)
    _recover(history, ckpt)
    _check_curves(history)
    if history.rows:
        print(f"resuming after {len(history)} trained networks in {workdir}", flush=True)

    trainer = _Trainer(config, space, child_cfg, fidelity, train, val)
    # Rounds before the last one in the history finished (their metrics stay); the last one
    # is repeated (its trained networks are skipped) and logged again.
    done_rounds = max((r["round"] for r in history.rows), default=0)
    writer = MetricWriter(workdir, resume_step=done_rounds if history.rows else None)
    planned = (
        rounds * m
        if schedule is None
        else sum(schedule.rung_of(r)[1].size for r in range(1, rounds + 1))
    )
    progress = Progress(
        1 + planned, len(history), enabled=config.get("progress", False), desc=str(name)
    )
    wall0 = time.time() - max((r.get("wall_s", 0.0) for r in history.rows), default=0.0)

    def graph_of(row):
        return space.parse(row["arch"])

    def variables_of(row):
        target = _abstract_variables(space, graph_of(row), num_classes, fidelity, image_shape)
        return ckpt.restore(target, step=row["id"] + 1)[0]

    def monitor_for(r, budget, text):
        """The curve stop of a child of round ``r``: against the best reward of the earlier
        rounds (with a schedule: at the child's budget, not stopped, as the discrete loop)."""
        if stopper is None:
            return None
        earlier = [x for x in history.rows if x["round"] < r]
        if schedule is not None:
            earlier = [x for x in earlier if x.get("budget") == budget and not x.get("stopped")]
        best = max((x["reward"] for x in earlier), default=None)

        def monitor(curve, planned_epochs):
            try:
                return stopper.should_stop(curve, best, planned_epochs)
            except curves.CurveError as e:
                raise curves.CurveError(
                    f"network {text!r} (round {r}): {e}. {history.path} keeps the "
                    f"{len(history)} networks trained so far and their checkpoints."
                ) from None

        return monitor

    def initial_variables(p, text):
        """The parent's trained variables morphed edit by edit (None: no parent)."""
        if p.parent is None:
            return None
        parent_row = history.rows[p.parent]
        graph, variables = graph_of(parent_row), variables_of(parent_row)
        morph_key = jax.random.fold_in(child_key(config.seed, text), _MORPH)
        for i, edit in enumerate(p.edits):
            child = morphism.apply_edit(space, graph, edit)
            variables = morphism.morph_variables(
                space, graph, edit, variables, jax.random.fold_in(morph_key, i)
            )
            graph = child
        if space.to_text(graph) != text:
            raise RuntimeError(f"the edits {p.edits} do not lead to {text!r}")
        return variables

    def train_round(r: int, proposals, propose_s: float, budget=None, fields=None) -> None:
        """Train ``proposals`` (at ``budget``; ``fields[k]``: more row fields of each)."""
        todo, extra, texts = [], {}, {}
        for k, p in enumerate(proposals):
            text = space.to_text(p.graph)
            key = discrete.history_key({"arch": text, "budget": budget})
            if key in history.by_arch:  # trained before a kill
                continue
            t0 = time.time()
            init = initial_variables(p, text)
            extra[k] = dict(
                **(fields[k] if fields else {}),
                parent=p.parent,
                edits=[str(e) for e in p.edits],
                morph_s=round(time.time() - t0, 2),
                **({"acq": {a: _json_float(v) for a, v in p.info.items()}} if p.info else {}),
            )
            texts[k] = text
            job = (text, p.graph, fidelities[budget], monitor_for(r, budget, text), init)
            todo.append((k, key, job))

        def on_done(k, key, result):
            text = texts[k]
            try:
                reward = check_reward(result["reward"])
            except ValueError as e:
                raise NonFiniteRewardError(
                    f"network {key!r} (round {r}, index {k}) has reward {result['reward']}: "
                    f"{e}. {history.path} keeps the {len(history)} networks trained so far and "
                    f"their checkpoints; rerun to resume (they are not trained again)."
                ) from None
            row = dict(id=len(history), round=r, index=k)
            if budget is not None:
                row["budget"] = budget
            row.update(**extra[k], arch=text, reward=reward)
            row["params"] = int(space.as_graph(text).num_params(num_classes, image_shape))
            row.update(steps=int(result["steps"]), epochs=round(float(result["epochs"]), 6))
            if result.get("stopped"):
                row.update(stopped=True, curve=result["curve"])
            row.update(train_s=result["train_s"], device=result["device"])
            if k == min(extra):
                row["propose_s"] = round(propose_s, 2)
            row["wall_s"] = round(time.time() - wall0, 2)
            ckpt.save(row["id"] + 1, result["variables"], {"row": row})
            history.add(row)
            progress.update(len(history))

        trainer.run(todo, on_done)

    def ask(r: int, round_key):
        """Round ``r``'s proposals, its budget and the rows' schedule fields."""
        earlier = [x for x in history.rows if x["round"] < r]
        if schedule is None:
            trained = [Trained(x["id"], graph_of(x), x["reward"]) for x in earlier]
            return strategy.propose(space, trained, m, round_key), None, None
        number, rung = schedule.rung_of(r)
        budget = schedule.budgets[rung.level]
        fields = dict(bracket=number, rung=rung.rung)
        if rung.new:  # new networks, from those evaluated at the model budget
            base = model_rows(earlier, budgets, schedule.min_points_in_model)
            trained = [Trained(x["id"], graph_of(x), x["reward"]) for x in base]
            seen = sorted({x["arch"] for x in earlier})
            proposals = strategy.propose(space, trained, rung.size, round_key, exclude=seen)
            return proposals, budget, [fields] * len(proposals)
        # successive halving: the best of the previous rung, again from its parent
        top = schedule.promote([x for x in earlier if x["round"] == r - 1], rung.size)
        proposals = [
            Proposal(x["parent"], tuple(parse_edit(e) for e in x["edits"]), graph_of(x))
            for x in top
        ]
        return proposals, budget, [dict(fields, promoted_from=x["id"]) for x in top]

    # Round 0: the start network, from scratch (with a schedule: at the largest budget).
    if not any(r["round"] == 0 for r in history.rows):
        start = space.start_graph()
        space.check(start, what="the start network")
        train_round(0, [_start_proposal(start)], 0.0, top_budget)
        _log_round(writer, history, 0, budgets)
    stopped_by = None
    for r in range(1, rounds + 1):
        if budget_s is not None and time.time() - wall0 >= budget_s:
            stopped_by = "time_budget_s"
            break
        if r < done_rounds:
            continue  # a round that finished before the kill (a later one holds rows)
        t0 = time.time()
        round_key = jax.random.fold_in(jax.random.fold_in(root, _ASK), r)
        proposals, budget, fields = ask(r, round_key)
        propose_s = time.time() - t0
        if not proposals:
            stopped_by = "no new architecture"
            break
        train_round(r, proposals, propose_s, budget, fields)
        _log_round(writer, history, r, budgets)
        best = history.incumbent(budgets=budgets)
        at = "" if budget is None else f" (budget {budget:g})"
        progress.write(
            f"round {r}/{rounds}{at}: {len(history)} trained; best {best['reward']:.4f} "
            f"{best['arch']}"
        )
    progress.close()
    writer.close()

    best = history.incumbent(budgets=budgets)
    num_archs = len({r["arch"] for r in history.rows})
    child_steps = sum(int(r.get("steps", 0)) for r in history.rows)
    summary = {
        "strategy": name,
        "space": space.name,
        "best_arch": best["arch"],
        "best_reward": best["reward"],
        "best_id": best["id"],
        "best_round": best["round"],
        "rounds": max(r["round"] for r in history.rows),
        "children_per_round": m,
        "num_trained": len(history),
        "stopped_by": stopped_by,
        "train_s_total": round(sum(r.get("train_s", 0.0) for r in history.rows), 1),
        "child_steps": child_steps,
        # In epochs of the full fidelity, against training each network once at it.
        "num_archs": num_archs,
        "num_stopped": sum(bool(r.get("stopped")) for r in history.rows),
        "child_epochs": round(child_steps / full_per_epoch, 3),
        "child_epochs_full": round(num_archs * full_steps / full_per_epoch, 3),
        "search_wall_s": round(time.time() - wall0, 1),
        "devices": len(trainer.devices),
    }
    if schedule is not None:
        summary.update(schedule=schedule.name, budgets=list(budgets))
    write_text(os.path.join(workdir, "best_arch.txt"), best["arch"] + "\n")
    try:
        pictures = space.draw(best["arch"], os.path.join(workdir, "best_graph"))
        summary["best_graph"] = [os.path.relpath(p, workdir) for p in pictures]
    except (OSError, RuntimeError, ImportError) as e:  # a picture is not worth the run
        summary["best_graph_error"] = str(e)
    if config.search.get("test_best", False):
        summary["best_test_acc"] = test_accuracy(config, workdir, [best["id"]])[best["id"]]
    ckpt.close()
    write_json(os.path.join(workdir, "summary.json"), summary)
    return summary


def _check_curves(history: History) -> None:
    """A history row's learning curve must be one (NaN or out of range: ``HistoryError``)."""
    for row in history.rows:
        if "curve" in row:
            try:
                curves.check_curve(row["curve"])
            except curves.CurveError as e:
                raise discrete.HistoryError(
                    f"{history.path}: network {row.get('id')} ({row['arch']!r}) has the curve "
                    f"{row['curve']}: {e}. Repair or remove that row (and the later ones)."
                ) from None


def _start_proposal(graph):
    from jnas.strategies.morphism_bo import Proposal

    return Proposal(None, (), graph)


def _json_float(v):
    return float(v) if isinstance(v, (float, np.floating)) else v


def _log_round(writer, history, r: int, budgets=None) -> None:
    rows = [x for x in history.rows if x["round"] == r]
    record = {
        "best_reward": history.incumbent(budgets=budgets)["reward"],
        "num_trained": len(history),
        "round_best": max(x["reward"] for x in rows),
    }
    if budgets:  # the round's budget, and the best at the largest budget so far
        record["budget"] = rows[0]["budget"]
    acq = [x["acq"]["acq"] for x in rows if "acq" in x]
    if acq:
        record["acq_max"] = max(acq)
    writer.write(r + 1, "round", record)
    writer.flush()


def _recover(history: History, ckpt: Checkpointer) -> None:
    """Add to the history the networks checkpointed after its last row (a kill between the
    two writes); refuse a history whose networks have no checkpoint."""
    steps = set(ckpt.manager.all_steps())
    missing = [r["id"] for r in history.rows if r["id"] + 1 not in steps]
    if missing:
        raise IncompatibleCheckpointError(
            f"{history.path} has networks {missing[:10]} whose variables are not in "
            f"{ckpt.directory} (removed or replaced?). Restore them, or remove the workdir to "
            "start afresh."
        )
    import orbax.checkpoint as ocp

    for step in sorted(s for s in steps if s > len(history)):
        if step != len(history) + 1:
            raise IncompatibleCheckpointError(
                f"{ckpt.directory} has step {step} after {len(history)} history rows"
            )
        meta = ckpt.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        row = dict(meta["meta"]["row"])
        history.add(history._check_row(row, len(history) + 2))


def test_accuracy(config, workdir: str, ids) -> dict[int, float]:
    """``{id: test accuracy}`` of trained networks of a search, with their searched weights
    (normalised as in training: the search-train images' channel mean and deviation), on the
    first ``data.test_limit`` (0: all) test images."""
    from jnas import data as jdata
    from jnas.spaces import child as child_lib

    space = make_space(config.space)
    child_cfg, fidelity = child_settings(config.child)
    info, train, _ = load_search_data(config)
    num_classes = child_cfg.num_classes or info.num_classes
    d = config.data
    images, labels = jdata.load_arrays(d.name, "test", data_dir=d.data_dir, source=d.source)
    limit = int(d.get("test_limit", 0) or 0)
    if limit:
        images, labels = images[:limit], labels[:limit]
    images, labels = child_lib.check_arrays((images, labels), "test")
    x_train = train[0]
    if fidelity.data_fraction < 1.0:
        x_train = x_train[: max(1, int(round(fidelity.data_fraction * x_train.shape[0])))]
    pixels = x_train.reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
    mean = jnp.asarray(pixels.mean(0), jnp.float32)
    std = jnp.asarray(np.maximum(pixels.std(0), 1e-3), jnp.float32)
    history = History(os.path.join(workdir, HISTORY), None, space, check_header=False)
    rows = {r["id"]: r for r in history.rows}
    ckpt = Checkpointer(workdir, max_to_keep=None)
    out = {}
    try:
        for i in ids:
            graph = space.parse(rows[i]["arch"])
            model = space.network(graph, num_classes=num_classes, fidelity=fidelity)
            target = _abstract_variables(space, graph, num_classes, fidelity, images.shape[1:])
            variables = ckpt.restore(target, step=i + 1)[0]
            out[i] = _accuracy(model, variables, images, labels, mean, std)
    finally:
        ckpt.close()
    return out


def _accuracy(model, variables, images, labels, mean, std, batch: int = 500) -> float:
    @jax.jit
    def correct(x, y, mask):
        logits = model.apply(variables, (x.astype(jnp.float32) / 255.0 - mean) / std)
        return jnp.sum((jnp.argmax(logits, -1) == y) & mask)

    total, n = 0, images.shape[0]
    b = min(batch, n)
    for s in range(0, n, b):
        x, y = images[s : s + b], labels[s : s + b]
        mask = np.arange(b) < x.shape[0]
        x = np.concatenate([x, np.zeros((b - x.shape[0], *x.shape[1:]), x.dtype)])
        y = np.concatenate([y, np.zeros((b - y.shape[0],), y.dtype)])
        total += int(correct(x, y, mask))
    return total / n


# --------------------------------------------------------------------------------------------
# Retraining the best graph from scratch (python -m experiments.train with a morphism config).


def is_morphism_config(config) -> bool:
    """Whether ``config`` is a search config whose strategy is of kind ``"morphism"``."""
    from jnas.strategies.base import kind_of

    name = config.get("strategy") if hasattr(config, "get") else None
    if not isinstance(name, str):
        return False
    try:
        return kind_of(name) == "morphism"
    except (ValueError, KeyError):
        return False


RETRAIN_KEYS = ("arch", "epochs", "train_limit", "search_workdir")


def retrain(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Retrain a graph of a morphism search from scratch, then test it.

    ``config.retrain``: ``arch`` (a graph's text, or a file holding one; default the search's
    ``<search_workdir>/best_arch.txt``), ``search_workdir``, ``epochs`` (training passes),
    ``train_limit`` (the first training images used, 0: all), and the child training options
    of ``config.child`` (batch size, learning rate, ...). The network trains on the training
    images and is tested on the first ``data.test_limit`` test images. Writes
    ``results.json`` (``arch``, ``test_acc``, ``params``, ``train_s``, ``epochs``); a rerun
    returns the results of a finished run.
    """
    from jnas import data as jdata
    from jnas.spaces import child as child_lib
    from jnas.spaces.base import Fidelity

    problems = _retrain_problems(config)
    if problems:
        lines = "\n".join(f"  - {k}: {m}" for k, m in problems)
        raise ConfigError(f"invalid config for experiments.train (a morphism retraining):\n{lines}")
    section = config.retrain
    arch = section.get("arch") or os.path.join(section.get("search_workdir"), "best_arch.txt")
    if os.path.isfile(arch):
        with open(arch) as f:
            arch = f.read().strip()
    space = make_space(config.space)
    graph = space.parse(arch)
    with use_runtime(config) as (config, _):
        check_workdir(config, workdir, allow_config_change=allow_config_change)
        results_path = os.path.join(workdir, "results.json")
        if os.path.exists(results_path):
            with open(results_path) as f:
                return json.load(f)
        os.makedirs(workdir, exist_ok=True)
        record_config(config, workdir)
        child_cfg, _ = child_settings(config.child)
        d = config.data
        info = jdata.get_dataset_info(d.name)
        x, y = jdata.load_arrays(d.name, "train", data_dir=d.data_dir, source=d.source)
        limit = int(section.get("train_limit", 0) or 0)
        if limit:
            x, y = x[:limit], y[:limit]
        tx, ty = jdata.load_arrays(d.name, "test", data_dir=d.data_dir, source=d.source)
        test_limit = int(d.get("test_limit", 0) or 0)
        if test_limit:
            tx, ty = tx[:test_limit], ty[:test_limit]
        if not child_cfg.num_classes:
            child_cfg = dataclasses.replace(child_cfg, num_classes=info.num_classes)
        t0 = time.time()
        out = space.train_child(
            graph,
            (x, y),
            (tx, ty),
            fidelity=Fidelity(epochs=int(section.epochs)),
            config=child_cfg,
            key=jax.random.fold_in(jax.random.key(config.seed), 7),
            return_variables=False,
        )
        accuracy = out if isinstance(out, float) else out.accuracy
        results = {
            "arch": space.to_text(graph),
            "test_acc": float(accuracy),
            "params": int(
                graph.num_params(
                    child_cfg.num_classes,
                    child_lib.check_arrays((x[:1], y[:1]), "train")[0].shape[1:],
                )
            ),
            "train_s": round(time.time() - t0, 1),
            "epochs": int(section.epochs),
            "num_train": int(len(y)),
            "num_test": int(len(ty)),
        }
        write_json(results_path, results)
        return results


def _retrain_problems(config) -> list[tuple[str, str]]:
    out = []
    section = config.get("retrain")
    if section is None or not hasattr(section, "get"):
        return [("retrain", "missing: a section with arch or search_workdir, and epochs")]
    unknown = sorted(set(section.keys()) - set(RETRAIN_KEYS) - {"enabled"})
    if unknown:
        out.append(("retrain", f"unknown key(s) {unknown}; known: {list(RETRAIN_KEYS)}"))
    epochs = section.get("epochs")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        out.append(("retrain.epochs", f"{epochs!r} is not an integer >= 1"))
    limit = section.get("train_limit", 0)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        out.append(("retrain.train_limit", f"{limit!r} is not an integer >= 0"))
    arch, where = section.get("arch"), section.get("search_workdir")
    if not arch and not where:
        out.append(("retrain.arch", "missing: a graph's text or file, or set search_workdir"))
    elif not arch and not os.path.isfile(os.path.join(where, "best_arch.txt")):
        out.append(("retrain.search_workdir", f"{where!r} has no best_arch.txt"))
    elif arch and not os.path.isfile(arch):
        try:
            make_space(config.space).parse(arch)
        except (ValueError, TypeError, KeyError) as e:
            out.append(("retrain.arch", f"neither a file nor a valid graph: {e}"))
    return out
