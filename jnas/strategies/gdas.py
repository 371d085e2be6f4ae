"""GDAS: Gradient-based search using Differentiable Architecture Sampler (Dong & Yang, CVPR
2019, "Searching for A Robust Neural Architecture in Four GPU Hours").

Instead of mixing every op on every edge as DARTS does, each forward pass samples *one* op
per edge from ``softmax(alpha)`` with the Gumbel-max trick, computes only that op, and
back-propagates through the Gumbel-softmax relaxation (straight-through,
:func:`jnas.strategies.gumbel.gumbel_softmax_st`; the edge is
:class:`jnas.spaces.edges.SampledMixedOp`). One sample per cell type is shared by all cells
of that type, as in the official code. A step therefore costs about one sampled
sub-network's forward and backward, twice.

Following the official code (``D-X-Y/AutoDL-Projects``, ``exps/algos/GDAS.py``), a step
first updates the weights on a training batch, then ``alpha`` on a validation batch with the
new weights (first order; each pass draws its own sample). The temperature falls linearly
per epoch from ``gdas.tau_max`` (10) to ``gdas.tau_min`` (0.1).

``gdas.fixed_reduction=True`` is GDAS-FRC: only the normal cell is searched; every reduction
cell is the paper's hand-designed one (:data:`jnas.spaces.edges.FRC_REDUCE_CELL`), carried
by the same supernet as one fixed op per edge, and written into the genotype.

The genotype uses the DARTS rule on ``softmax(alpha)`` (two strongest incoming edges per
node from distinct inputs), like every strategy here, so that methods compare on the same
footing. (The official code instead keeps the two strongest (op, input) pairs per node.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jnas.errors import ConfigError
from jnas.spaces import edges
from jnas.spaces.darts import log_softmax64
from jnas.spaces.genotype import Genotype
from jnas.strategies import gumbel, oneshot
from jnas.strategies.base import STRATEGIES
from jnas.strategies.oneshot import softmax_weights


def weight_optimizer(cfg: ml_collections.ConfigDict, epochs: int, steps_per_epoch: int):
    """The official GDAS weight optimizer: grad-norm clip, L2 decay, SGD with (Nesterov)
    momentum, cosine learning rate updated every step (AutoDL's ``scheduler.update``).

    Returns:
      ``(tx, lr_fn)``.
    """
    total = max(epochs * steps_per_epoch, 1)
    lr_fn = optax.cosine_decay_schedule(cfg.lr, total, alpha=cfg.lr_min / cfg.lr)
    parts = []
    if cfg.grad_clip:
        parts.append(optax.clip_by_global_norm(cfg.grad_clip))
    parts += [
        optax.add_decayed_weights(cfg.weight_decay),
        optax.sgd(lr_fn, momentum=cfg.momentum or None, nesterov=bool(cfg.get("nesterov"))),
    ]
    return optax.chain(*parts), lr_fn


@dataclasses.dataclass(frozen=True)
class GdasSearch(oneshot.OneShotSearch):
    """:class:`OneShotSearch` in GDAS's order: weights first (train), then alpha (val), each
    pass with its own sample of the sub-network; logs the temperature as ``tau``.

    Attributes:
      tau_fn: ``step -> temperature``.
    """

    tau_fn: Callable[[jax.Array], jax.Array] | None = None
    weights_first: bool = True


def check_config(config: ml_collections.ConfigDict) -> None:
    """Reject settings GDAS cannot run, before anything compiles."""
    g = config.gdas
    gumbel.check_temperatures(g.tau_max, g.tau_min)
    if config.search.hypergradient != "first":
        raise ConfigError(
            f"GDAS updates alpha with the first-order gradient of the sampled network; "
            f"search.hypergradient={config.search.hypergradient!r} is not supported (use 'first')"
        )
    if g.fixed_reduction:
        m = config.model
        if m.n_nodes != 4 or m.multiplier != 4:
            raise ConfigError(
                "GDAS-FRC's fixed reduction cell has 4 nodes, all concatenated: needs "
                f"model.n_nodes=4 and model.multiplier=4, got {m.n_nodes} and {m.multiplier}"
            )
        if (2 * m.C) % 8:
            raise ConfigError(
                f"GDAS-FRC's reduction cell groups its convolutions in 8: the reduction cells' "
                f"channels (2C={2 * m.C}, 4C) must be multiples of 8, so model.C must be a "
                "multiple of 4"
            )


def build(
    config: ml_collections.ConfigDict,
    *,
    num_classes: int,
    steps_per_epoch: int,
    axis_name: str | None = None,
) -> GdasSearch:
    """Build the GDAS (or GDAS-FRC) search from a config (``experiments/configs/gdas_*.py``).

    The supernet runs its edges one by one (``vmap_edges`` is forced off: a ``lax.switch``
    under ``vmap`` would compute every op), whatever ``config.model.vmap_edges`` says.

    Args:
      config: the DARTS config sections plus ``gdas`` (``tau_max``, ``tau_min``,
        ``fixed_reduction``).
      num_classes: classes of the data set.
      steps_per_epoch: search steps per epoch (temperature and lr schedules).
      axis_name: the pmap axis name when data-parallel, else None.

    Returns:
      The :class:`GdasSearch`.
    """
    check_config(config)
    g = config.gdas
    space = oneshot.space_from_config(config)
    epochs = config.search.epochs
    tau_fn = gumbel.linear_temperature(g.tau_max, g.tau_min, epochs, steps_per_epoch)
    frc = bool(g.fixed_reduction)
    searched = ("normal",) if frc else ("normal", "reduce")
    primitives = space.primitives
    fixed_reduce = None
    if frc:
        reduce_prims = edges.fixed_cell_primitives(edges.FRC_REDUCE_CELL, space.n_nodes)
        primitives = {"normal": space.primitives, "reduce": reduce_prims}
        n = space.num_edges
        fixed_reduce = {"hard": jnp.ones((n, 1)), "index": jnp.zeros((n,), jnp.int32)}
    model = oneshot.supernet_from_config(
        config,
        space,
        num_classes,
        axis_name,
        primitives=primitives,
        mixed_op=edges.SampledMixedOp,
        vmap_edges=False,
    )

    def init_alpha(key):
        alpha = space.init_alpha(key, config.search.alpha_init_scale)
        return {t: alpha[t] for t in searched}

    def with_fixed(arch):
        return dict(arch, reduce=fixed_reduce) if frc else arch

    def arch_fn(alpha, key, step):
        tau = tau_fn(step)
        keys = jax.random.split(key, len(searched))
        arch = {}
        for t, k in zip(searched, keys):
            hard, index = gumbel.gumbel_softmax_st(k, alpha[t], tau)
            arch[t] = {"hard": hard, "index": index}
        return with_fixed(arch)

    def eval_arch_fn(alpha):  # the most likely op per edge
        arch = {}
        for t in searched:
            index = jnp.argmax(alpha[t], -1).astype(jnp.int32)
            arch[t] = {"hard": jax.nn.one_hot(index, alpha[t].shape[-1]), "index": index}
        return with_fixed(arch)

    def derive(alpha) -> Genotype:
        w = log_softmax64(alpha)
        if frc:
            normal = space.derive({"normal": w["normal"], "reduce": w["normal"]})
            return dataclasses.replace(normal, reduce=edges.FRC_REDUCE_CELL)
        return space.derive(w)

    w_tx, lr_fn = weight_optimizer(config.optim_w, epochs, steps_per_epoch)
    return GdasSearch.from_config(
        config,
        steps_per_epoch=steps_per_epoch,
        axis_name=axis_name,
        w_tx=w_tx,
        lr_fn=lr_fn,
        model=model,
        init_alpha=init_alpha,
        arch_fn=arch_fn,
        eval_arch_fn=eval_arch_fn,
        hypergradient="first",
        op_weights_fn=softmax_weights,
        derive_fn=derive,
        tau_fn=tau_fn,
        extra_metrics_fn=lambda step: {"tau": tau_fn(step)},
    )


STRATEGIES.register("gdas", kind="gradient")(
    oneshot.GradientStrategy(
        build=build,
        title="GDAS",
        configs={"cifar10": "gdas_cifar10", "fashion_mnist": "gdas_fashion_mnist"},
        second_order=False,
        check_config=check_config,
    )
)
