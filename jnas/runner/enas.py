"""The host loop of a shared-weight (ENAS) search: :mod:`jnas.strategies.enas`'s schedule on
the same workdir, data, checkpoints, metrics and parallelism as the one-shot searches.

``search(config, workdir)`` runs the strategy named by ``config.strategy`` (kind
``"shared"``) and resumes from the last checkpoint in ``workdir``. Each epoch is
``steps_per_epoch`` shared-weight steps on the search-train split (a fresh architecture per
minibatch, augmented as the one-shot searches' batches), then, every
``controller.train_every`` epochs, ``controller.train_steps`` controller updates of
``controller.num_aggregate`` architectures each, rewarded on validation minibatches of the
search-val split (normalised only: the official ``build_valid_rl(shuffle=False)``). At the
end ``search.derive_samples`` architectures are sampled and scored on the same
``search.derive_batches`` validation minibatches; the best is the result. The workdir holds:

* ``config.json``, ``checkpoints/`` (the whole :class:`jnas.strategies.enas.EnasState`:
  supergraph weights and batch statistics, their optimizer state, the controller's
  parameters, Adam moments and baseline, and the key), ``metrics.jsonl`` and ``tb/``: per
  ``log_every_steps`` the running train loss/accuracy and lr; per epoch the epoch means
  (``kind: "epoch"``: train loss/accuracy; the controller phase's mean reward, validation
  accuracy, entropy, advantage, skip rate (macro) and the last baseline, ``controller_*``);
* ``archs.jsonl``: every sampled architecture in the space's text form: ``kind: "train"``
  (one per shared-weight step), ``kind: "controller"`` (with its reward accuracy ``acc``)
  and ``kind: "derive"`` (the final samples and their scores);
* ``genotypes.jsonl``: per epoch the best architecture of its controller phase;
* ``genotype.txt``: the derived architecture's text; ``derived.json``: every derivation
  sample and its score; ``cells/`` or ``macro.*`` pictures where the space draws
  (``write_pictures``); ``summary.json``: ``arch`` (text), ``arch_acc``, ``genotype``
  (the same text, for the tools that read it: a micro cell is a DARTS genotype), the last
  epoch's record.

Every random draw folds a stream and a counter into the state's key (the step, the
controller update, the sample): a resumed run repeats exactly what an uninterrupted one
computes (the data order is a function of (seed, epoch, batch) as in the one-shot loop).
A kill during a controller phase resumes from the last checkpoint before it (the phase is
checkpointed as a whole, with the epoch).
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np

from jnas import data as jdata
from jnas.runner import use_runtime
from jnas.runner.checkpoint import Checkpointer, write_json
from jnas.runner.data import load_search_data, make_prepare, normalize_only
from jnas.runner.parallel import Parallel
from jnas.runner.progress import Progress
from jnas.runner.workdir import check_workdir, record_config
from jnas.runner.writers import MetricWriter, StepLog, append_jsonl, truncate_jsonl, write_text
from jnas.strategies.enas import shared_strategy
from jnas.validate import check_search_config

FINITE_METRICS = ("train_loss",)
HINT = "Lower optim_w.lr_max or check the data"
ARCHS = "archs.jsonl"
_VAL_STREAM, _REWARD_STREAM = 1, 2


def search(
    config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False
) -> dict:
    """Run (or resume) an ENAS search.

    Args:
      config: the experiment config (``experiments/configs/enas_*.py``).
      workdir: where checkpoints, metrics and architectures go; a rerun resumes from it.
      allow_config_change: continue a workdir whose ``config.json`` differs from ``config``.

    Returns:
      The summary (see the module docstring).

    Raises:
      ConfigError: the config is not valid (:func:`jnas.validate.check_search_config`).
      WorkdirConfigError: ``workdir`` belongs to another config (nothing was written).
      NonFiniteLossError: a training loss became NaN or infinite, or the state about to be
        checkpointed holds one; the last good checkpoint is kept.
    """
    check_search_config(config)
    with use_runtime(config) as (config, runtime):
        check_workdir(config, workdir, allow_config_change=allow_config_change)
        return _search(config, workdir, runtime)


class _Compiled:
    """The search's compiled steps (jit, or pmap over the batch)."""

    def __init__(self, searcher, parallel: Parallel, prepare, eval_prepare, seed: int):
        self.searcher, self.parallel = searcher, parallel
        data_key = jax.random.fold_in(jax.random.PRNGKey(seed), 0xDA7A)

        @jax.jit
        def augment(step, x, y):  # the global batch: the result does not depend on sharding
            return prepare(jax.random.fold_in(data_key, step), x, y)

        self.augment = augment
        self.eval_prepare = jax.jit(eval_prepare)
        self.step = parallel.compile(searcher.step)
        self.controller_step = parallel.compile(searcher.controller_step)
        # (state, arch, batch): the arch is broadcast to every device under pmap
        self.sums = parallel.compile(
            searcher.accuracy_sums, donate_state=False, in_axes=(0, None, 0)
        )
        self.sample = jax.jit(searcher.sample)

    def sums_of(self, dstate, arch, batches) -> dict:
        """Accuracy sums of ``arch`` over ``batches`` (prepared, unsharded)."""
        total = {"correct": 0.0, "count": 0.0, "loss_sum": 0.0}
        for b in batches:
            out = self.parallel.get(jax.device_get(self.sums(dstate, arch, self.parallel.shard(b))))
            for k in total:
                total[k] += float(out[k])
        return total


def _search(config: ml_collections.ConfigDict, workdir: str, runtime) -> dict:
    strategy = shared_strategy(config.strategy)
    info, (tx, ty), (vx, vy) = load_search_data(config)
    bs = config.search.batch_size
    train_batches = jdata.Batches(tx, ty, batch_size=bs, seed=config.seed, stream=0)
    reward_batches = jdata.Batches(vx, vy, batch_size=bs, seed=config.seed, stream=_REWARD_STREAM)
    steps_per_epoch = len(train_batches)
    if config.search.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.search.max_steps_per_epoch)
    epochs = config.search.epochs
    total_steps = epochs * steps_per_epoch
    parallel = Parallel(config.parallel, xla_options=runtime.xla_options)
    parallel.check_batch(bs, "search.batch_size")
    searcher = strategy(
        config,
        num_classes=info.num_classes,
        steps_per_epoch=steps_per_epoch,
        axis_name=parallel.axis_name,
    )
    space, ctrl_cfg = searcher.space, config.controller
    steps = _Compiled(
        searcher, parallel, make_prepare(info, config), normalize_only(info), config.seed
    )

    os.makedirs(workdir, exist_ok=True)  # after the data and the strategy's checks
    ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints, hint=HINT)
    latest = ckpt.latest_step()
    sample = steps.eval_prepare(tx[:2], ty[:2])["image"]
    key = jax.random.PRNGKey(config.seed)
    start, meta = 0, {}
    if latest is not None:  # restore into the abstract state: nothing compiles
        state, meta = ckpt.restore(jax.eval_shape(searcher.init, key, sample))
        start = int(state.step)
        print(f"resuming from step {start} in {workdir}", flush=True)
    else:
        state = searcher.init(key, sample)
    record_config(config, workdir)
    summary_path = os.path.join(workdir, "summary.json")
    finished = start >= total_steps and os.path.exists(summary_path)
    writer = MetricWriter(workdir, resume_step=start, drop_kinds=() if finished else ("final",))
    archs_path = os.path.join(workdir, ARCHS)
    genotypes_path = os.path.join(workdir, "genotypes.jsonl")
    # rows past the checkpoint are redone; so are the derivation's unless the search finished
    truncate_jsonl(archs_path, start, drop_kinds=() if finished else ("derive",))
    truncate_jsonl(genotypes_path, start)

    dstate = parallel.put(state)
    del state
    sums = dict(meta.get("epoch_sums", {}))
    metrics = dict(meta.get("epoch_record", {}))
    t0, compile_s = time.time(), None
    progress = Progress(total_steps, start, enabled=config.progress, desc=config.strategy)
    log = StepLog(writer, progress, workdir, config.log_every_steps, FINITE_METRICS, HINT)
    last_ckpt = latest
    for step in range(start, total_steps):
        epoch, index = divmod(step, steps_per_epoch)
        x, y = train_batches.batch(epoch, index)
        t_step = time.time()
        dstate, m, arch = steps.step(dstate, parallel.shard(steps.augment(step, x, y)))
        if compile_s is None:
            jax.block_until_ready(m)
            compile_s = time.time() - t_step
        m, arch = parallel.get(jax.device_get((m, arch)))
        log(m, step=step, sums=sums, last_checkpoint=last_ckpt)
        append_jsonl(archs_path, {"step": step + 1, "kind": "train", "arch": space.to_text(arch)})

        end_of_epoch = (step + 1) % steps_per_epoch == 0
        if end_of_epoch:
            record = {"epoch": epoch + 1}
            n = max(sums.get("_n", 1), 1)
            record.update({k: v / n for k, v in sums.items() if k != "_n"})
            if ctrl_cfg.train_steps and (epoch + 1) % ctrl_cfg.train_every == 0:
                dstate, phase = _controller_phase(
                    config, steps, dstate, reward_batches, archs_path, step + 1
                )
                record.update(phase["means"])
                append_jsonl(
                    genotypes_path,
                    {
                        "epoch": epoch + 1,
                        "step": step + 1,
                        "arch": phase["best"],
                        "acc": phase["best_acc"],
                    },
                )
            writer.write(step + 1, "epoch", record)
            writer.flush()
            shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
            progress.write(f"epoch {epoch + 1}/{epochs}: {shown}")
            metrics, sums = record, {}
        if end_of_epoch or (step + 1) % config.checkpoint_every_steps == 0:
            ckpt.save(step + 1, parallel.get(dstate), {"epoch_sums": sums, "epoch_record": metrics})
            last_ckpt = step + 1
    progress.close()

    if finished:
        import json

        with open(summary_path) as f:
            summary = json.load(f)
    else:
        derived = _derive(config, steps, dstate, (vx, vy), archs_path, total_steps)
        best = derived["best"]
        write_text(os.path.join(workdir, "genotype.txt"), best["arch"] + "\n")
        write_json(os.path.join(workdir, "derived.json"), derived)
        summary = {
            "arch": best["arch"],
            "genotype": best["arch"],
            "arch_acc": best["acc"],
            "space": config.space.name,
            "steps": total_steps,
            "controller_updates": int(parallel.get(jax.device_get(dstate.controller.num_updates))),
            "search_wall_s": round(time.time() - t0, 1),
            "compile_s": None if compile_s is None else round(compile_s, 1),
            **{k: v for k, v in metrics.items() if isinstance(v, float)},
        }
        writer.write(total_steps, "final", {"arch": best["arch"], "arch_acc": best["acc"]})
        write_json(summary_path, summary)
    writer.close()
    ckpt.close()
    return summary


def _reward_stack(config, steps, reward_batches, first: int, count: int):
    """``count`` validation minibatches from the reward stream, from its ``first``-th on
    (cycling through epochs of the stream), stacked batch-major ``[B, count, ...]``."""
    n = len(reward_batches)
    xs, ys = [], []
    for c in range(first, first + count):
        x, y = reward_batches.batch(*divmod(c, n))
        xs.append(x)
        ys.append(y)
    b = steps.eval_prepare(np.stack(xs, 1), np.stack(ys, 1))  # normalise: elementwise
    return b


def _controller_phase(config, steps, dstate, reward_batches, archs_path, step):
    """``controller.train_steps`` updates; returns ``(dstate, {"means", "best", "best_acc"})``."""
    parallel, space = steps.parallel, steps.searcher.space
    a = config.controller.num_aggregate
    totals, best, best_acc = {}, None, -1.0
    for _ in range(config.controller.train_steps):
        done = int(parallel.get(jax.device_get(dstate.controller.num_updates)))
        stack = _reward_stack(config, steps, reward_batches, done * a, a)
        dstate, m, archs, accs = steps.controller_step(dstate, parallel.shard(stack))
        m, archs, accs = parallel.get(jax.device_get((m, archs, accs)))
        for k, v in m.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        for arch, acc in zip(np.asarray(archs), np.asarray(accs), strict=True):
            text = space.to_text(arch)
            append_jsonl(
                archs_path, {"step": step, "kind": "controller", "arch": text, "acc": float(acc)}
            )
            if float(acc) > best_acc:
                best, best_acc = text, float(acc)
    n = config.controller.train_steps
    means = {f"controller_{k}": v / n for k, v in totals.items()}
    means["controller_baseline"] = float(m["baseline"])  # the last, not the mean
    return dstate, {"means": means, "best": best, "best_acc": best_acc}


def _derive(config, steps, dstate, val_split, archs_path, step) -> dict:
    """Sample ``search.derive_samples`` architectures from the final controller, score each
    with the shared weights on the same ``search.derive_batches`` validation minibatches
    (the first of the search-val split's natural order), keep the best (first on ties)."""
    parallel, searcher = steps.parallel, steps.searcher
    state = parallel.get(dstate)
    bs = config.search.batch_size
    vx, vy = val_split
    batches = []
    for i in range(config.search.get("derive_batches", 1)):
        lo = (i * bs) % max(len(vx) - bs + 1, 1)
        batches.append(steps.eval_prepare(vx[lo : lo + bs], vy[lo : lo + bs]))
    keys = searcher.derive_keys(state, config.search.derive_samples)
    rows = []
    for k in keys:
        arch = steps.sample(state.controller.params, k)
        s = steps.sums_of(dstate, arch, batches)
        acc = s["correct"] / max(s["count"], 1.0)
        text = searcher.space.to_text(np.asarray(arch))
        rows.append({"arch": text, "acc": acc})
        append_jsonl(archs_path, {"step": step, "kind": "derive", "arch": text, "acc": acc})
    best = max(rows, key=lambda r: r["acc"])  # max keeps the first of equal scores
    return {"best": best, "samples": rows, "batches": len(batches), "batch_size": bs}
