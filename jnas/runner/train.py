"""The retraining host loop: a fixed genotype trained from scratch, then tested.

``train(config, workdir)`` builds the evaluation network of ``config.model`` for the
genotype ``config.genotype`` (a published name, a ``Genotype(...)`` text or a file path; or
the ``genotype`` argument), trains it with the DARTS evaluation recipe
(:mod:`jnas.runner.train_step`) and resumes from the last checkpoint in ``workdir``. The
workdir then holds:

* ``config.json``, ``genotype.txt`` and ``network.json``: what was trained (the network's
  input shape, classes and parameter counts; ``config.json``'s ``runtime`` section: the
  native kernels and XLA options the steps were compiled with, see :mod:`jnas.ops.settings`);
* ``checkpoints/``: orbax checkpoints of the whole train state (and the loop's counters);
  ``best/checkpoints/``: the state with the best test accuracy so far;
* ``metrics.jsonl`` and ``tb/``: per ``log_every_steps`` the train step's metrics, per epoch
  the epoch means and the test loss and accuracy (JSON lines and TensorBoard);
* ``results.json``: the final test accuracy, the best one, parameter counts and timings. A
  run killed after its last checkpoint writes the same on its rerun (the last test
  evaluation is part of the checkpoint); a rerun of a finished retraining keeps it.

``evaluate(workdir, which="final" | "best")`` restores a checkpoint and tests it.

Batches are a function of (seed, epoch, index) and the augmentation and drop-path keys of
(seed, step), so a resumed run computes exactly what an uninterrupted one does. Under
``config.parallel = "pmap"`` the global batch is augmented as a whole, then split over the
local devices; batch norm statistics and drop-path masks are those of the global batch.
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import ml_collections
import numpy as np

from jnas import data as jdata
from jnas.errors import ConfigError
from jnas.ops import precision
from jnas.runner import use_runtime
from jnas.runner.checkpoint import Checkpointer, IncompatibleCheckpointError, write_json
from jnas.runner.parallel import Parallel
from jnas.runner.progress import Progress
from jnas.runner.train_step import Retrainer, create_optimizer
from jnas.runner.workdir import check_workdir, record_config
from jnas.runner.writers import MetricWriter, StepLog, write_text
from jnas.spaces.base import make_space
from jnas.spaces.cells import abstract_variables, build_network, count_params
from jnas.spaces.genotype import Genotype
from jnas.spaces.published import get_genotype
from jnas.validate import check_train_config

# What the NaN guard checks after every step: the loss, and the weights after the update
# (Checkpointer.save checks every floating leaf of the state besides).
FINITE_METRICS = ("train_loss", "param_norm")
HINT = "Lower config.optim.lr or check the data"


def build_trainer(
    config: ml_collections.ConfigDict,
    genotype: Genotype,
    *,
    num_classes: int,
    steps_per_epoch: int,
    axis_name: str | None = None,
) -> Retrainer:
    """The network, optimizer and schedules of an evaluation config.

    Raises (before anything is traced or compiled) on a bad genotype or network shape.
    """
    m, t = config.model, config.train
    if not isinstance(genotype, Genotype):  # a space's own network (see space_architecture)
        model = genotype.eval_network(num_classes=num_classes, bn_axis_name=axis_name)
    else:
        model = build_network(
            m.network,
            genotype,
            C=m.C,
            layers=m.layers,
            num_classes=num_classes,
            auxiliary=m.auxiliary,
            scan_cells=m.scan_cells,
            bn_axis_name=axis_name,
        )
    tx, lr_fn = create_optimizer(config.optim, t.epochs, steps_per_epoch)
    return Retrainer(
        model=model,
        tx=tx,
        lr_fn=lr_fn,
        steps_per_epoch=steps_per_epoch,
        epochs=t.epochs,
        drop_path_prob=t.drop_path_prob,
        aux_weight=t.auxiliary_weight if m.auxiliary else 0.0,
        label_smoothing=t.label_smoothing,
        axis_name=axis_name,
        compute_dtype=precision.compute_dtype(m.get("compute_dtype")),
    )


def load_data(config: ml_collections.ConfigDict):
    """``(info, (train_images, train_labels), (test_images, test_labels))`` of ``config.data``."""
    d = config.data
    info = jdata.get_dataset_info(d.name)
    kw = dict(data_dir=d.data_dir, source=d.source)
    train = jdata.subset(*jdata.load_arrays(d.name, "train", **kw), d.limit or None)
    test = jdata.subset(*jdata.load_arrays(d.name, "test", **kw), d.test_limit or None)
    return info, train, test


def space_architecture(config: ml_collections.ConfigDict, text: str | None = None):
    """The architecture to retrain when ``config.space`` names a search space whose
    networks are not DARTS cells (e.g. ``{"name": "enas_macro", ...}``): the space's
    ``retrain_architecture`` of ``text`` (default ``config.genotype``: the architecture's
    text or a file holding it); None when the config has no ``space``.

    The object has ``str`` (its text) and ``eval_network(num_classes=, bn_axis_name=)``
    (a network returning ``(logits, logits_aux)``), which the retraining uses in place of
    a genotype's evaluation network.
    """
    section = config.get("space")
    if not section:
        return None
    try:
        space = make_space(section)
    except (ValueError, KeyError) as e:  # an unknown space or option, a bad value
        raise ConfigError(f"space: {e}") from e
    if not callable(getattr(space, "retrain_architecture", None)):
        raise ConfigError(
            f"space: search space {space.name!r} has no retraining network; retrain a DARTS "
            "genotype without config.space"
        )
    if text is None:
        text = config.get("genotype")
        if not isinstance(text, str):
            raise ConfigError(
                f"genotype: {text!r} is not the text of a {space.name} architecture or the "
                "path of a file holding one"
            )
    return space.retrain_architecture(text)


def resolve_genotype(config: ml_collections.ConfigDict, genotype: Genotype | None) -> Genotype:
    """The genotype argument, else ``config.genotype`` (name, text or path)."""
    if genotype is not None:
        return genotype.validate()
    return get_genotype(config.genotype)


class _Steps:
    """The batch augmentation and the train and eval steps, compiled by ``parallel``."""

    def __init__(self, trainer: Retrainer, info, config: ml_collections.ConfigDict, parallel):
        self.trainer, self.parallel = trainer, parallel
        d = config.data
        crop = info.crop_padding if d.crop_padding is None else d.crop_padding
        flip = info.flip if d.flip is None else d.flip
        root = jax.random.PRNGKey(config.seed)
        data_key, self.drop_key = jax.random.fold_in(root, 0xDA7A), jax.random.fold_in(root, 0xD209)
        mean, std = info.mean, info.std

        @jax.jit
        def augment(step, images, labels):  # on the global batch, before sharding
            x = jdata.augment_batch(
                jax.random.fold_in(data_key, step),
                images,
                mean=mean,
                std=std,
                crop_padding=crop,
                flip=flip,
                cutout_length=d.cutout_length,
            )
            return {"image": x, "label": labels}

        self.augment = augment
        self.normalize = jax.jit(
            lambda images, labels: {"image": jdata.normalize(images, mean, std), "label": labels}
        )
        # The drop-path key is the same on every device (in_axes None): masks are drawn for
        # the global batch and each device takes its slice (see drop_path_scales).
        self.step = parallel.compile(trainer.step, in_axes=(0, 0, None))
        self.eval = parallel.compile(trainer.eval_step, donate_state=False)

    def run(self, state, step: int, images, labels):
        batch = self.augment(step, images, labels)
        key = jax.random.fold_in(self.drop_key, step)
        state, metrics = self.step(state, self.parallel.shard(batch), key)
        return state, self.parallel.get(jax.device_get(metrics))

    def evaluate(self, state, images, labels, batch_size: int) -> dict:
        """Mean loss and accuracy over a whole split; ``state`` as ``parallel.put`` gives it."""
        return self.parallel.evaluate(self.eval, state, images, labels, batch_size, self.normalize)


def _check_genotype_file(workdir: str, genotype: Genotype) -> None:
    """Refuses a workdir whose ``genotype.txt`` holds another genotype (writes nothing)."""
    path = os.path.join(workdir, "genotype.txt")
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if isinstance(genotype, Genotype):
            saved, differs = Genotype.parse(text), Genotype.parse(text) != genotype
        else:
            saved, differs = text.strip(), text.strip() != str(genotype)
        if differs:
            raise IncompatibleCheckpointError(
                f"{workdir} was trained with another genotype ({saved}); use another --workdir"
            )


def _check_network_file(workdir: str, network: dict) -> None:
    """Refuses to resume a run whose ``network.json`` describes another network kind or
    data (classes, image shape; the image shape need not change the checkpoint's shapes,
    which :meth:`Checkpointer.restore` compares); writes nothing."""
    path = os.path.join(workdir, "network.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    diff = [k for k in ("network", "num_classes", "image_shape") if saved.get(k) != network[k]]
    if diff:
        there = {k: saved.get(k) for k in diff}
        here = {k: network.get(k) for k in diff}
        raise IncompatibleCheckpointError(
            f"the checkpoints in {workdir} are of another network or data ({path}: {there}, "
            f"this run: {here}); use another --workdir, or remove it to start afresh"
        )


def _zeros_like_abstract(tree):
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), tree)


def train(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    genotype: Genotype | None = None,
    data=None,
    allow_config_change: bool = False,
) -> dict:
    """Train (or resume) an evaluation network from scratch and test it.

    Args:
      config: an evaluation config (``experiments/configs/eval_cifar10.py``).
      workdir: where checkpoints, metrics and results go; a rerun resumes from it.
      genotype: the cell to train; by default ``config.genotype`` is resolved (with
        ``config.space`` set, as that space's architecture: :func:`space_architecture`).
      data: optional in-memory ``(info, (train_x, train_y), (test_x, test_y))`` (uint8
        images ``[N, H, W, C]``, ``info`` a :class:`jnas.data.DatasetInfo`) instead of
        loading ``config.data.name``.
      allow_config_change: continue a workdir whose ``config.json`` differs from ``config``
        in keys that change the results (:mod:`jnas.runner.workdir`).

    Returns:
      The results (also written to ``<workdir>/results.json``): ``test_acc``,
      ``test_loss``, ``best_test_acc``, ``best_step``, ``params``, ``params_with_aux``,
      ``steps``, ``epochs``, ``train_wall_s``, ``compile_s``, ``genotype``. When
      ``config.train.stop_after_steps`` stops the run early: ``{"steps", "stopped": True}``.

    Raises:
      jnas.errors.ConfigError: the config is not a valid evaluation config
        (:func:`jnas.validate.check_train_config`; nothing was written).
      jnas.errors.WorkdirConfigError: ``workdir`` belongs to another config.
      jnas.runner.errors.NonFiniteLossError: the loss or the weights after a step became
        NaN or infinite, or the state about to be checkpointed holds a NaN or an infinity
        (nothing of that step is saved; the last good checkpoint is kept).
      IncompatibleCheckpointError: ``workdir`` holds another genotype, or checkpoints of
        another network or data (nothing in it was written).
    """
    if genotype is None:
        genotype = space_architecture(config)  # None unless config.space names a space
    check_train_config(config, genotype=genotype, data=data)
    with use_runtime(config) as (config, runtime):
        check_workdir(config, workdir, allow_config_change=allow_config_change)
        return _train(config, workdir, runtime, genotype, data)


def _train(config, workdir: str, runtime, genotype: Genotype | None, data) -> dict:
    genotype = resolve_genotype(config, genotype)
    info, (tx, ty), (vx, vy) = data if data is not None else load_data(config)
    t = config.train
    batches = jdata.Batches(tx, ty, batch_size=t.batch_size, seed=config.seed)
    steps_per_epoch = len(batches)
    if t.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, t.max_steps_per_epoch)
    total_steps = steps_per_epoch * t.epochs
    parallel = Parallel(config.parallel, xla_options=runtime.xla_options)
    parallel.check_batch(t.batch_size, "train.batch_size")
    trainer = build_trainer(
        config,
        genotype,
        num_classes=info.num_classes,
        steps_per_epoch=steps_per_epoch,
        axis_name=parallel.axis_name,
    )
    # Shapes only: every network check (aux head size, reductions) runs here, pre-compile.
    abstract = abstract_variables(trainer.model, tuple(tx.shape[1:]))
    n_params = count_params(abstract["params"])
    n_params_aux = count_params(abstract["params"], auxiliary=True)

    os.makedirs(workdir, exist_ok=True)
    # What evaluate() needs to rebuild the network without loading the training data.
    network = {
        "network": config.model.network,
        "num_classes": info.num_classes,
        "image_shape": list(tx.shape[1:]),
        "params": n_params,
        "params_with_aux": n_params_aux,
    }
    # A workdir of another genotype, network or data is refused before anything is written.
    _check_genotype_file(workdir, genotype)
    steps = _Steps(trainer, info, config, parallel)
    sample = steps.normalize(tx[:2], ty[:2])["image"]
    init_key = jax.random.PRNGKey(config.seed)
    ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints, hint=HINT)
    start, meta = 0, {}
    if ckpt.latest_step() is not None:
        _check_network_file(workdir, network)
        # Into the abstract state (nothing compiles); a checkpoint that does not fit raises.
        state, meta = ckpt.restore(jax.eval_shape(trainer.init, init_key, sample))
        start = int(state.step)
        print(f"resuming from step {start} in {workdir}", file=sys.stderr, flush=True)
    else:
        state = trainer.init(init_key, sample)  # un-jitted: see init
    record_config(config, workdir)  # after the checks above: an allowed change is recorded
    write_text(os.path.join(workdir, "genotype.txt"), str(genotype) + "\n")
    write_json(os.path.join(workdir, "network.json"), network)
    best_ckpt = Checkpointer(os.path.join(workdir, "best"), max_to_keep=1, hint=HINT)
    results_path = os.path.join(workdir, "results.json")
    # A finished retraining has its results; one killed after its last checkpoint but
    # before them rewrites the final record (dropped here) and the results.
    finished = start >= total_steps and os.path.exists(results_path)
    writer = MetricWriter(workdir, resume_step=start, drop_kinds=() if finished else ("final",))
    if not start:
        writer.write_text(0, "genotype", str(genotype))
    print(
        f"{genotype}: {n_params:,} parameters ({n_params_aux:,} with the auxiliary head)",
        file=sys.stderr,
        flush=True,
    )

    dstate = parallel.put(state)
    del state
    sums = dict(meta.get("epoch_sums", {}))
    best = {"acc": meta.get("best_acc", -1.0), "step": meta.get("best_step")}
    stop_at = min(total_steps, t.stop_after_steps or total_steps)
    progress = Progress(total_steps, start, enabled=config.progress, desc="train")
    log = StepLog(writer, progress, workdir, config.log_every_steps, FINITE_METRICS, HINT)
    last_ckpt, compile_s, t0 = ckpt.latest_step(), None, time.time()
    # (step, test metrics) of the last evaluation, checkpointed: a run resumed after its
    # last checkpoint reports the same final test metrics without evaluating again.
    last_eval = meta.get("last_eval")
    last_eval = None if last_eval is None else (last_eval[0], last_eval[1])
    for step in range(start, stop_at):
        epoch, index = divmod(step, steps_per_epoch)
        images, labels = batches.batch(epoch, index)
        t_step = time.time()
        dstate, m = steps.run(dstate, step, images, labels)
        if compile_s is None:
            compile_s = time.time() - t_step
        log(m, step=step, sums=sums, last_checkpoint=last_ckpt)
        end_of_epoch = (step + 1) % steps_per_epoch == 0
        if end_of_epoch:
            n = max(sums.pop("_n", 1), 1)
            record = {"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}}
            every = t.eval_every_epochs
            if (every and (epoch + 1) % every == 0) or step + 1 == total_steps:
                ev = steps.evaluate(dstate, vx, vy, t.eval_batch_size)
                record.update(test_loss=ev["loss"], test_acc=ev["acc"])
                last_eval = (step + 1, ev)
                if config.keep_best and ev["acc"] > best["acc"]:
                    best = {"acc": ev["acc"], "step": step + 1}
                    best_ckpt.save(step + 1, parallel.get(dstate), {"test_acc": ev["acc"]})
            writer.write(step + 1, "epoch", record)
            writer.flush()
            progress.write(f"epoch {epoch + 1}: { {k: round(v, 4) for k, v in record.items()} }")
            sums = {}
        if end_of_epoch or (step + 1) % config.checkpoint_every_steps == 0:
            meta = {"epoch_sums": sums, "best_acc": best["acc"], "best_step": best["step"]}
            meta["last_eval"] = None if last_eval is None else list(last_eval)
            ckpt.save(step + 1, parallel.get(dstate), meta)
            last_ckpt = step + 1
    progress.close()
    wall = time.time() - t0
    state = parallel.get(dstate)
    done = int(state.step)
    if done < total_steps:  # stopped early on purpose (config.train.stop_after_steps)
        writer.close()
        ckpt.close()
        best_ckpt.close()
        return {"steps": done, "stopped": True}
    if finished:  # a rerun of a finished retraining (e.g. by its search): keep its record
        writer.close()
        ckpt.close()
        best_ckpt.close()
        with open(results_path) as f:
            return json.load(f)
    if last_eval is None or last_eval[0] != done:
        last_eval = (done, steps.evaluate(dstate, vx, vy, t.eval_batch_size))
    ev = last_eval[1]
    results = {
        "test_acc": ev["acc"],
        "test_loss": ev["loss"],
        "best_test_acc": max(best["acc"], ev["acc"]),
        "best_step": best["step"] if best["acc"] >= ev["acc"] else done,
        "params": n_params,
        "params_with_aux": n_params_aux,
        "steps": done,
        "epochs": t.epochs,
        "train_wall_s": round(wall, 1),
        "compile_s": None if compile_s is None else round(compile_s, 1),
        "genotype": str(genotype),
    }
    writer.write(done, "final", {k: v for k, v in results.items() if k != "genotype"})
    writer.close()
    ckpt.close()
    best_ckpt.close()
    write_json(results_path, results)
    return results


def restore_state(workdir: str, *, which: str = "final", num_classes: int | None = None):
    """Rebuild a retraining from its workdir and restore one of its checkpoints.

    Args:
      workdir: the workdir of :func:`train`.
      which: ``"final"`` (the latest checkpoint) or ``"best"`` (best test accuracy).
      num_classes: classes of the data (by default those the run was trained on).

    Returns:
      ``(config, genotype, trainer, state)``; ``trainer`` on one device.
    """
    if which not in ("final", "best"):
        raise ValueError(f"which must be 'final' or 'best', got {which!r}")
    with open(os.path.join(workdir, "config.json")) as f:
        config = ml_collections.ConfigDict(json.load(f))
    with open(os.path.join(workdir, "genotype.txt")) as f:
        text = f.read()
    genotype = space_architecture(config, text) or Genotype.parse(text)
    with open(os.path.join(workdir, "network.json")) as f:
        network = json.load(f)
    config.parallel = "none"
    num_classes = network["num_classes"] if num_classes is None else num_classes
    trainer = build_trainer(config, genotype, num_classes=num_classes, steps_per_epoch=1)
    ckpt_dir = workdir if which == "final" else os.path.join(workdir, "best")
    ckpt = Checkpointer(ckpt_dir)
    if ckpt.latest_step() is None:
        raise FileNotFoundError(f"no {which} checkpoint in {ckpt_dir}/checkpoints")
    sample = np.zeros((2, *network["image_shape"]), np.float32)
    target = _zeros_like_abstract(jax.eval_shape(trainer.init, jax.random.PRNGKey(0), sample))
    state, _ = ckpt.restore(target)
    ckpt.close()
    return config, genotype, trainer, jax.tree.map(jax.numpy.asarray, state)


def evaluate(workdir: str, *, which: str = "final", data=None) -> dict:
    """Test accuracy of the final (latest) or best checkpoint of a retraining.

    Args:
      workdir: the workdir of :func:`train`.
      which: ``"final"`` (the latest checkpoint) or ``"best"`` (best test accuracy).
      data: optional in-memory data, as for :func:`train`.

    Returns:
      ``{"which", "step", "test_acc", "test_loss", "params"}`` (also written to
      ``<workdir>/eval_<which>.json``).
    """
    num_classes = data[0].num_classes if data is not None else None
    config, _, trainer, state = restore_state(workdir, which=which, num_classes=num_classes)
    info, _, (vx, vy) = data if data is not None else load_data(config)
    with use_runtime(config) as (config, runtime):
        parallel = Parallel("none", xla_options=runtime.xla_options)
        ev = _Steps(trainer, info, config, parallel).evaluate(
            state, vx, vy, config.train.eval_batch_size
        )
    result = {
        "which": which,
        "step": int(state.step),
        "test_acc": ev["acc"],
        "test_loss": ev["loss"],
        "params": count_params(state.params),
    }
    write_json(os.path.join(workdir, f"eval_{which}.json"), result)
    return result
