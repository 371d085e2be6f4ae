"""The pure parts of retraining a fixed architecture: state, optimizer, train and eval steps.

The DARTS evaluation recipe (Liu et al. 2019, Sec. A.2; ``cnn/train.py`` and
``cnn/train_imagenet.py``):

    loss = CE(logits, y) + aux_weight * CE(logits_aux, y)       (CE label-smoothed on ImageNet)
    g    = clip_by_global_norm(grad loss, grad_clip)
    w   <- SGD(momentum) with L2 weight decay added to g, lr per epoch: cosine or step decay
    drop-path probability at epoch e = drop_path_prob * e / epochs

Everything here is a pure function of its inputs; :class:`Retrainer` bundles the static
parts (model, optimizer, schedules), so that ``jax.jit(trainer.step)`` or
``jax.pmap(trainer.step, axis_name=...)`` compile it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from jnas.ops.precision import to_compute, to_float32
from jnas.runner.parallel import classification_sums
from jnas.strategies.oneshot import epoch_cosine


class TrainState(struct.PyTreeNode):
    """The whole state of a retraining; a pytree, checkpointed as is."""

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def lr_schedule(optim: ml_collections.ConfigDict, epochs: int, steps_per_epoch: int):
    """The learning rate as a function of the step, constant within an epoch.

    ``optim.schedule``: ``"cosine"`` (PyTorch ``CosineAnnealingLR(T_max=epochs,
    eta_min=lr_min)``, DARTS CIFAR) or ``"step"`` (``StepLR(decay_every_epochs,
    gamma=decay_rate)``, DARTS ImageNet: 0.97 every epoch).
    """
    if optim.schedule == "cosine":
        return epoch_cosine(optim.lr, optim.lr_min, epochs, steps_per_epoch)
    if optim.schedule == "step":
        every = max(int(optim.decay_every_epochs), 1)

        def step_decay(count):
            return optim.lr * optim.decay_rate ** ((count // steps_per_epoch) // every)

        return step_decay
    raise ValueError(f"config.optim.schedule must be 'cosine' or 'step', got {optim.schedule!r}")


def create_optimizer(optim: ml_collections.ConfigDict, epochs: int, steps_per_epoch: int):
    """Clip the gradient norm, add L2 weight decay, SGD with momentum (PyTorch order).

    Returns:
      ``(tx, lr_fn)``.
    """
    lr_fn = lr_schedule(optim, epochs, steps_per_epoch)
    parts = []
    if optim.grad_clip:
        parts.append(optax.clip_by_global_norm(optim.grad_clip))
    if optim.weight_decay:
        parts.append(optax.add_decayed_weights(optim.weight_decay))
    parts.append(optax.sgd(lr_fn, momentum=optim.momentum or None, nesterov=optim.nesterov))
    return optax.chain(*parts), lr_fn


def classification_loss(logits, labels, label_smoothing: float = 0.0):
    """Mean cross-entropy, with labels smoothed as ``(1 - eps) onehot + eps / K``."""
    if not label_smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets).mean()


@dataclasses.dataclass(frozen=True)
class Retrainer:
    """Train and evaluation steps of a fixed evaluation network.

    Attributes:
      model: the network, returning ``(logits, logits_aux)``.
      tx: the optax transform of the weights.
      lr_fn: the learning rate per step (for logging).
      steps_per_epoch: steps per epoch (drop-path and lr are constant within an epoch).
      epochs: total epochs (drop-path reaches ``drop_path_prob`` at the end).
      drop_path_prob: the final drop-path probability.
      aux_weight: weight of the auxiliary head's loss.
      label_smoothing: label smoothing of the training loss.
      axis_name: the pmap axis, or None on one device.
      compute_dtype: the dtype the network computes in (:mod:`jnas.ops.precision`); the
        weights, optimizer state, batch statistics and loss stay float32.
    """

    model: nn.Module
    tx: optax.GradientTransformation
    lr_fn: Callable[[jax.Array], jax.Array]
    steps_per_epoch: int
    epochs: int
    drop_path_prob: float = 0.0
    aux_weight: float = 0.0
    label_smoothing: float = 0.0
    axis_name: str | None = None
    compute_dtype: Any = jnp.float32

    def init(self, key: jax.Array, sample_images: jax.Array) -> TrainState:
        """Initialise weights, batch statistics and the optimizer state."""
        # Param init draws hundreds of tensors: the RBG generator keeps that HLO small.
        # lazy_init runs only the initializers (no forward pass); un-jitted it takes seconds,
        # where compiling it costs about as long as compiling the step.
        init_key = jax.random.key(jax.random.randint(key, (), 0, 2**31 - 1), impl="rbg")
        sample = jax.ShapeDtypeStruct(sample_images.shape, sample_images.dtype)
        variables = self.model.lazy_init(init_key, sample, train=True)
        params = variables["params"]
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=variables.get("batch_stats", {}),
            opt_state=self.tx.init(params),
        )

    def _cast(self, tree):
        return to_compute(tree, self.compute_dtype)

    def drop_prob(self, step: jax.Array) -> jax.Array:
        """DARTS: ``drop_path_prob * epoch / epochs``, the epoch counted from 0."""
        epoch = step // self.steps_per_epoch
        return self.drop_path_prob * epoch.astype(jnp.float32) / max(self.epochs, 1)

    def step(self, state: TrainState, batch: dict, key: jax.Array):
        """One SGD step on ``batch`` (``image``, ``label``); ``key`` drives drop-path.

        Returns:
          ``(new_state, metrics)``: the main loss (without the auxiliary term), accuracy,
          learning rate, drop-path probability, gradient norm and the new weights' norm.
        """
        drop = self.drop_prob(state.step) if self.drop_path_prob else 0.0

        def loss_fn(params):
            (logits, logits_aux), updates = self.model.apply(
                {"params": self._cast(params), "batch_stats": state.batch_stats},
                self._cast(batch["image"]),
                train=True,
                drop_path_prob=drop,
                mutable=["batch_stats"],
                rngs={"dropout": key},
            )
            logits, logits_aux = to_float32(logits), to_float32(logits_aux)
            main = classification_loss(logits, batch["label"], self.label_smoothing)
            loss = main
            if logits_aux is not None and self.aux_weight:
                aux = classification_loss(logits_aux, batch["label"], self.label_smoothing)
                loss = loss + self.aux_weight * aux
            return loss, (main, logits, updates["batch_stats"])

        grads, (main, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        if self.axis_name is not None:
            grads = jax.lax.pmean(grads, self.axis_name)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "train_loss": main,
            "train_acc": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
            "lr": self.lr_fn(state.step),
            "drop_path_prob": jnp.asarray(drop, jnp.float32),
            "grad_norm": optax.global_norm(grads),
            "param_norm": optax.global_norm(params),  # inf once an update overflowed
        }
        if self.axis_name is not None:
            metrics = jax.lax.pmean(metrics, self.axis_name)
        new_state = state.replace(
            step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state
        )
        return new_state, metrics

    def eval_step(self, state: TrainState, batch: dict):
        """Loss and correct-prediction sums with running BN statistics (``model.eval()``).

        ``batch["weight"]`` (optional, 0 or 1 per example) masks out padding.
        """
        logits, _ = self.model.apply(
            {"params": self._cast(state.params), "batch_stats": state.batch_stats},
            self._cast(batch["image"]),
            train=False,
        )
        logits = to_float32(logits)
        return classification_sums(
            logits, batch["label"], batch.get("weight"), axis_name=self.axis_name
        )
