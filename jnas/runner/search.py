"""The host loop of a one-shot (supernet) search: data, jit/pmap, checkpoints, metrics.

``search(config, workdir)`` runs the strategy named by ``config.strategy`` and resumes from
the last checkpoint in ``workdir`` when there is one. The workdir then holds:

* ``config.json``: the config of the run;
* ``checkpoints/``: orbax checkpoints (the whole search state and the host loop's counters);
* ``metrics.jsonl`` and ``tb/``: per ``log_every_steps`` the running train/val loss and
  accuracy, per epoch the epoch means, the validation pass and the op weights of every
  edge (e.g. softmax(alpha)), as JSON lines and TensorBoard events;
* ``genotypes.jsonl``: the genotype derived after each epoch; ``genotype.txt``: the final one;
* ``alpha.json``: the final op weights per cell type and edge;
* ``stages.json`` (multi-stage strategies only): what each stage handed to the next;
* ``summary.json``: the final genotype and the last epoch's metrics (and the retraining's
  results). A run killed after its last checkpoint writes the same on its rerun (the last
  epoch's record is part of the checkpoint); a rerun of a finished search keeps it.

Whole files are written atomically and JSON lines by whole-line appends; a torn last line of
``metrics.jsonl`` or ``genotypes.jsonl`` is dropped on resume (:mod:`jnas.runner.writers`).
No checkpoint holds a NaN or an infinity (:mod:`jnas.runner.errors`).

``config.strategy`` names a registered gradient strategy
(:class:`jnas.strategies.oneshot.GradientStrategy`). One that runs in stages (P-DARTS)
registers ``stages(config)``, one config per stage, and ``transfer(searcher, state)``, what
the finished stage hands to the next one (JSON), which the next stage's build receives as
``carry``. Steps and
checkpoints are numbered across stages; a resumed run continues in the stage it stopped in.

Everything that jit compiles is pure; the data order is a function of (seed, epoch, batch)
and the augmentation key a function of (seed, step), so a resumed run repeats exactly what
an uninterrupted one computes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

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
from jnas.strategies.oneshot import gradient_strategy
from jnas.validate import check_search_config

__all__ = ["load_search_data", "search"]

# What the NaN guard checks after every step: the losses (a step that sent the weights to
# infinity shows in the next step's). Checkpointer.save checks every floating leaf of the
# state it writes, so no update that overflowed is ever saved.
FINITE_METRICS = ("train_loss", "val_loss")
HINT = "Lower the learning rate(s) or check the data"


class _Steps:
    """A stage's compiled search and evaluation steps, and the batch augmentation."""

    def __init__(self, search, parallel: Parallel, prepare, eval_prepare, seed: int):
        self.search, self.parallel = search, parallel
        data_key = jax.random.fold_in(jax.random.PRNGKey(seed), 0xDA7A)

        # Augment the global batch (so that the result does not depend on the sharding).
        @jax.jit
        def augment(step, tx, ty, vx, vy):
            k = jax.random.fold_in(data_key, step)
            kt, kv = jax.random.split(k)
            return prepare(kt, tx, ty), prepare(kv, vx, vy)

        self.augment = augment
        self.eval_prepare = jax.jit(eval_prepare)
        self.step = parallel.compile(search.step)
        self.eval = parallel.compile(search.eval_step, donate_state=False)

    def run(self, state, step, train, val):
        tb, vb = self.augment(step, *train, *val)
        return self.step(state, self.parallel.shard(tb), self.parallel.shard(vb))

    def evaluate(self, state, images, labels, batch_size):
        """Mean loss and accuracy over a whole split (the last batch padded, padding masked)."""
        return self.parallel.evaluate(
            self.eval, state, images, labels, batch_size, self.eval_prepare
        )


def _edge_table(weights: dict[str, Any]) -> dict[str, list]:
    return {t: np.round(np.asarray(w), 5).tolist() for t, w in weights.items()}


def search(
    config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False
) -> dict:
    """Run (or resume) a gradient-based architecture search.

    Args:
      config: the experiment config (e.g. ``experiments/configs/darts_cifar10.py``).
      workdir: where checkpoints, metrics and genotypes go; a rerun resumes from it.
      allow_config_change: continue a workdir whose ``config.json`` differs from ``config``
        in keys that change the results (:mod:`jnas.runner.workdir`).

    Returns:
      A summary: the final genotype (text), steps, final metrics, wall time and, when
      ``config.retrain.enabled``, the retraining's results (``config.retrain`` is then an
      evaluation config, as for ``experiments.train``).

    Raises:
      ConfigError: the config is not valid (:func:`jnas.validate.check_search_config`).
      WorkdirConfigError: ``workdir`` belongs to another config (nothing was written).
      UnknownNameError / ValueError: ``config.strategy`` is not a gradient strategy.
      NonFiniteLossError: a loss, or the weights or alpha after a step, became NaN or
        infinite, or the state about to be checkpointed holds a NaN or an infinity (an
        optimizer moment, a batch-norm statistic); nothing of that step was saved and the
        last good checkpoint is kept.

    The run is inside ``jnas.runner.use_runtime(config)``: ``config.json`` records the
    runtime switches (native kernels, XLA options) the steps were compiled with.
    """
    check_search_config(config)
    with use_runtime(config) as (config, runtime):
        check_workdir(config, workdir, allow_config_change=allow_config_change)
        return _search(config, workdir, runtime, allow_config_change)


def _search(config: ml_collections.ConfigDict, workdir: str, runtime, allow_change) -> dict:
    strategy = gradient_strategy(config.strategy)
    stage_configs = strategy.stage_configs(config)
    info, (tx, ty), (vx, vy) = load_search_data(config)
    bs = config.search.batch_size
    train_batches = jdata.Batches(tx, ty, batch_size=bs, seed=config.seed, stream=0)
    val_batches = jdata.Batches(vx, vy, batch_size=bs, seed=config.seed, stream=1)
    steps_per_epoch = min(len(train_batches), len(val_batches))
    if config.search.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.search.max_steps_per_epoch)
    stage_ends = [int(e) for e in np.cumsum([c.search.epochs for c in stage_configs])]
    stage_ends = [e * steps_per_epoch for e in stage_ends]  # global step at each stage's end
    total_steps = stage_ends[-1]
    parallel = Parallel(config.parallel, xla_options=runtime.search_xla_options)
    parallel.check_batch(bs, "search.batch_size")

    def build_stage(stage: int, carry):
        """The stage's search, its compiled steps, its (un-jitted) init and init key."""
        searcher = strategy(
            stage_configs[stage],
            num_classes=info.num_classes,
            steps_per_epoch=steps_per_epoch,
            axis_name=parallel.axis_name,
            carry=carry,
        )
        steps = _Steps(
            searcher, parallel, make_prepare(info, config), normalize_only(info), config.seed
        )
        key = jax.random.PRNGKey(config.seed)
        return (
            searcher,
            steps,
            searcher.init,  # un-jitted: see OneShotSearch.init
            jax.random.fold_in(key, stage) if stage else key,
        )

    os.makedirs(workdir, exist_ok=True)  # after the data and the strategy's checks
    ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints, hint=HINT)
    latest = ckpt.latest_step()
    # The stage to resume in; a checkpoint at a stage's end belongs to that stage.
    stage = min(int(np.searchsorted(stage_ends, latest or 0)), len(stage_ends) - 1)
    searcher, steps, init, init_key = build_stage(stage, _stage_carry(workdir, stage))

    # Initialise (cheap to trace, compiled once), then restore when resuming.
    sample = steps.eval_prepare(tx[:2], ty[:2])["image"]
    start, meta = 0, {}
    if latest is not None:  # restore into the abstract state: nothing compiles
        state, meta = ckpt.restore(jax.eval_shape(init, init_key, sample))
        start = (stage_ends[stage - 1] if stage else 0) + int(state.step)
        print(f"resuming from step {start} in {workdir}", flush=True)
    else:
        state = init(init_key, sample)
    record_config(config, workdir)  # after the checkpoint's check: an allowed change is recorded
    summary_path = os.path.join(workdir, "summary.json")
    # A finished search has its summary; one killed after its last checkpoint but before the
    # summary rewrites the final record (dropped here), genotype, alpha and summary.
    finished = start >= total_steps and os.path.exists(summary_path)
    writer = MetricWriter(workdir, resume_step=start, drop_kinds=() if finished else ("final",))
    genotypes_path = os.path.join(workdir, "genotypes.jsonl")
    truncate_jsonl(genotypes_path, start)

    dstate = parallel.put(state)
    del state
    sums = dict(meta.get("epoch_sums", {}))
    # compile_s: the first step of every stage run here (trace, compile, one step), summed.
    t0, compile_s, first_of_stage = time.time(), None, True
    progress = Progress(total_steps, start, enabled=config.progress, desc=config.strategy)
    log = StepLog(writer, progress, workdir, config.log_every_steps, FINITE_METRICS, HINT)
    last_ckpt = ckpt.latest_step()
    metrics = dict(meta.get("epoch_record", {}))  # the last epoch's record (the summary's)
    for step in range(start, total_steps):
        if stage + 1 < len(stage_ends) and step == stage_ends[stage]:  # hand over, rebuild
            carry = strategy.transfer(searcher, parallel.get(dstate))
            stage += 1
            _save_stage_carry(workdir, stage, carry)
            searcher, steps, init, init_key = build_stage(stage, carry)
            dstate = parallel.put(init(init_key, sample))
            first_of_stage = True
            progress.write(f"stage {stage + 1}/{len(stage_ends)} from step {step}")
        epoch, index = divmod(step, steps_per_epoch)
        tb = train_batches.batch(epoch, index)
        vb = val_batches.batch(epoch, index)
        t_step = time.time()
        dstate, m = steps.run(dstate, step, tb, vb)
        if first_of_stage:
            jax.block_until_ready(m)
            compile_s = (compile_s or 0.0) + time.time() - t_step
            first_of_stage = False
        m = parallel.get(jax.device_get(m))
        log(m, step=step, sums=sums, last_checkpoint=last_ckpt)

        end_of_epoch = (step + 1) % steps_per_epoch == 0
        if end_of_epoch:
            state = parallel.get(dstate)
            metrics = _end_epoch(
                config, searcher, steps, state, writer, epoch, step + 1, sums, (vx, vy)
            )
            shown = {k: round(v, 4) for k, v in metrics.items() if k.endswith(("loss", "acc"))}
            progress.write(f"epoch {epoch + 1}/{total_steps // steps_per_epoch}: {shown}")
            g = searcher.genotype(state)
            append_jsonl(genotypes_path, {"epoch": epoch + 1, "step": step + 1, "genotype": str(g)})
            sums = {}
        if end_of_epoch or (step + 1) % config.checkpoint_every_steps == 0:
            meta = {"epoch_sums": sums, "epoch_record": metrics}
            ckpt.save(step + 1, parallel.get(dstate), meta)
            last_ckpt = step + 1
    progress.close()

    state = parallel.get(dstate)
    genotype = searcher.genotype(state)
    if finished:
        # A rerun of a finished search (e.g. to finish its retraining): keep its record.
        with open(summary_path) as f:
            summary = {k: v for k, v in json.load(f).items() if k != "retrain"}
    else:
        write_text(os.path.join(workdir, "genotype.txt"), str(genotype) + "\n")
        write_json(os.path.join(workdir, "alpha.json"), _edge_table(searcher.op_weights(state)))
        summary = {
            "genotype": str(genotype),
            "steps": total_steps,
            "search_wall_s": round(time.time() - t0, 1),
            "compile_s": None if compile_s is None else round(compile_s, 1),
            **{k: v for k, v in metrics.items() if isinstance(v, float)},
        }
        writer.write(total_steps, "final", {"genotype": str(genotype)})
        write_json(summary_path, summary)  # the search's record, before any retraining
    writer.close()
    ckpt.close()
    if config.get("retrain") is not None and config.retrain.get("enabled", False):
        from jnas.runner.train import train  # the retraining host loop (evaluation network)

        summary["retrain"] = train(
            config.retrain,
            os.path.join(workdir, "retrain"),
            genotype=genotype,
            allow_config_change=allow_change,
        )
        write_json(summary_path, summary)
    return summary


def _end_epoch(config, searcher, steps, state, writer, epoch, step, sums, val_split):
    n = max(sums.get("_n", 1), 1)
    means = {k: v / n for k, v in sums.items() if k != "_n"}
    record = {"epoch": epoch + 1, **means}
    if config.eval_every_epochs and (epoch + 1) % config.eval_every_epochs == 0:
        ev = steps.evaluate(state, *val_split, config.eval_batch_size)
        record["val_eval_loss"], record["val_eval_acc"] = ev["loss"], ev["acc"]
    writer.write(step, "epoch", record)
    weights = jax.device_get(searcher.op_weights(state))
    writer.write(step, "op_weights", {t: np.asarray(w) for t, w in weights.items()})
    writer.write_text(step, "genotype", str(searcher.genotype(state)))
    writer.flush()
    return record


def _stage_carry(workdir: str, stage: int):
    """What the previous stage handed to ``stage`` (None for the first stage)."""
    if stage == 0:
        return None
    path = os.path.join(workdir, "stages.json")
    try:
        with open(path) as f:
            return json.load(f)[str(stage)]
    except (OSError, KeyError) as e:
        raise FileNotFoundError(
            f"{workdir} has a checkpoint of stage {stage + 1} but {path} lacks what stage "
            f"{stage} handed over; remove the workdir's checkpoints to start afresh"
        ) from e


def _save_stage_carry(workdir: str, stage: int, carry) -> None:
    path = os.path.join(workdir, "stages.json")
    saved = {}
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
    saved[str(stage)] = carry
    write_json(path, saved)
