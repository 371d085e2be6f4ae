"""One way to compile a step for one device (jit) or all local devices (pmap), to replicate
and unreplicate its state, to shard its batches, and to evaluate a whole split.

Both host loops (the one-shot search and the retraining) use :class:`Parallel`; a step is
``step(state, *batches_and_keys) -> (state, metrics)`` and an evaluation step
``eval_step(state, batch) -> {"loss_sum", "correct", "count"}`` (psummed over the axis
under pmap).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from jnas import data as jdata

AXIS = "batch"
MODES = ("none", "pmap")


class Parallel:
    """Compiles steps for ``mode`` (``"none"``: one device, jit; ``"pmap"``: all local devices).

    Args:
      mode: ``"none"`` or ``"pmap"`` (``config.parallel``).
      xla_options: the XLA compiler options of jitted steps (``config.runtime``; None:
        XLA's defaults).
    """

    def __init__(self, mode: str, xla_options: dict | None = None):
        if mode not in MODES:
            raise ValueError(f"config.parallel must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.pmap = mode == "pmap"
        self.n_dev = jax.local_device_count() if self.pmap else 1
        self.axis_name = AXIS if self.pmap else None
        self.xla_options = xla_options

    def check_batch(self, batch_size: int, what: str = "batch_size") -> None:
        """A global batch must split evenly over the devices."""
        if batch_size % self.n_dev:
            raise ValueError(f"{what}={batch_size} must divide evenly over {self.n_dev} devices")

    def compile(self, fn: Callable, *, donate_state: bool = True, in_axes=0) -> Callable:
        """``fn`` jitted (with the XLA options) or pmapped over :data:`AXIS`."""
        donate = (0,) if donate_state else ()
        if self.pmap:
            return jax.pmap(fn, axis_name=AXIS, in_axes=in_axes, donate_argnums=donate)
        return jax.jit(fn, donate_argnums=donate, compiler_options=self.xla_options)

    def put(self, state):
        """The state on the devices: replicated on a leading device axis under pmap."""
        if not self.pmap:
            return state
        devices = jax.local_devices()
        mesh = jax.sharding.Mesh(np.asarray(devices), ("devices",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
        n = len(devices)
        return jax.tree.map(
            lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n, *np.shape(x))), sharding),
            state,
        )

    def get(self, tree):
        """One replica of a replicated tree (the state, or metrics averaged over devices)."""
        return jax.tree.map(lambda x: x[0], tree) if self.pmap else tree

    def shard(self, batch):
        """A global batch split into ``[n_dev, B / n_dev, ...]`` under pmap."""
        return jdata.shard(batch, self.n_dev) if self.pmap else batch

    def evaluate(self, eval_fn: Callable, state, images, labels, batch_size: int, prepare):
        """Mean loss and accuracy over a whole split.

        The last batch is padded to the batch size (static shapes) and its padding gets
        weight 0. ``eval_fn`` is a compiled evaluation step, ``state`` as :meth:`put`
        returns it, ``prepare(images, labels) -> batch`` the (jitted) normalisation.
        """
        bs = max(self.n_dev, batch_size - batch_size % self.n_dev)
        totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
        for start in range(0, len(images), bs):
            x, y = images[start : start + bs], labels[start : start + bs]
            weight = np.ones(len(x), np.float32)
            if len(x) < bs:
                pad = bs - len(x)
                x = np.concatenate([x, np.repeat(x[:1], pad, 0)])
                y = np.concatenate([y, np.repeat(y[:1], pad, 0)])
                weight = np.concatenate([weight, np.zeros(pad, np.float32)])
            batch = dict(prepare(x, y), weight=weight)
            out = self.get(jax.device_get(eval_fn(state, self.shard(batch))))
            for k in totals:
                totals[k] += float(out[k])
        count = max(totals["count"], 1.0)
        return {"loss": totals["loss_sum"] / count, "acc": totals["correct"] / count}


def classification_sums(logits, labels, weight=None, axis_name: str | None = None) -> dict:
    """``{"loss_sum", "correct", "count"}`` of a batch (``weight`` masks padding), psummed
    over ``axis_name`` under pmap: what every evaluation step returns."""
    import jax.numpy as jnp
    import optax

    weight = jnp.ones(labels.shape, jnp.float32) if weight is None else weight
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    out = {
        "loss_sum": jnp.sum(weight * losses),
        "correct": jnp.sum(weight * (jnp.argmax(logits, -1) == labels)),
        "count": jnp.sum(weight),
    }
    return out if axis_name is None else jax.lax.psum(out, axis_name)
