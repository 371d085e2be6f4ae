"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019).

The continuous relaxation (Eq. 2): every edge of the supernet mixes all candidate ops with
weights ``softmax(alpha_edge)``; ``alpha`` (normal and reduce, each ``[14, 8]``) is learnt
by the bilevel update of :mod:`jnas.strategies.bilevel` on the validation half, the weights
by SGD on the training half. ``config.search.hypergradient`` picks first order (``first``,
xi = 0), the paper's second order (``fd``) or our exact autodiff variant (``exact``).
The genotype keeps, per node, the two strongest incoming edges and their strongest
non-``none`` op (Sec. 2.4).
"""

from __future__ import annotations

import jax
import ml_collections

from jnas.spaces.darts import DartsSpace, SearchNetwork
from jnas.strategies import oneshot


def softmax_weights(alpha):
    """``softmax(alpha)`` over the op axis, per cell type."""
    return jax.tree.map(lambda a: jax.nn.softmax(a, axis=-1), alpha)


def space_from_config(config: ml_collections.ConfigDict) -> DartsSpace:
    m = config.model
    return DartsSpace(primitives=tuple(m.primitives), n_nodes=m.n_nodes)


def network_from_config(config, num_classes: int, axis_name: str | None, **overrides):
    m = config.model
    kw = dict(
        C=m.C,
        num_classes=num_classes,
        layers=m.layers,
        n_nodes=m.n_nodes,
        multiplier=m.multiplier,
        stem_multiplier=m.stem_multiplier,
        primitives=tuple(m.primitives),
        vmap_edges=m.vmap_edges,
        remat=m.remat,
        bn_axis_name=axis_name,
    )
    kw.update(overrides)
    return SearchNetwork(**kw)


def build(
    config: ml_collections.ConfigDict,
    *,
    num_classes: int,
    steps_per_epoch: int,
    axis_name: str | None = None,
) -> oneshot.OneShotSearch:
    """Build the DARTS search from a config (see ``experiments/configs/darts_cifar10.py``).

    Args:
      config: the experiment config (sections ``model``, ``optim_w``, ``optim_alpha``,
        ``search``).
      num_classes: classes of the data set.
      steps_per_epoch: search steps per epoch (the lr schedule is stepped per epoch).
      axis_name: the pmap axis name when data-parallel, else None.

    Returns:
      The :class:`~jnas.strategies.oneshot.OneShotSearch`.
    """
    space = space_from_config(config)
    w_tx, lr_fn = oneshot.weight_optimizer(config.optim_w, config.search.epochs, steps_per_epoch)
    return oneshot.OneShotSearch(
        model=network_from_config(config, num_classes, axis_name),
        init_alpha=lambda key: space.init_alpha(key, config.search.alpha_init_scale),
        arch_fn=lambda alpha, key, step: softmax_weights(alpha),
        eval_arch_fn=softmax_weights,
        w_tx=w_tx,
        a_tx=oneshot.arch_optimizer(config.optim_alpha),
        lr_fn=lr_fn,
        hypergradient=config.search.hypergradient,
        weight_decay=config.optim_w.weight_decay,
        momentum=config.optim_w.momentum,
        axis_name=axis_name,
        arch_start_step=config.search.arch_start_epoch * steps_per_epoch,
        op_weights_fn=softmax_weights,
        derive_fn=lambda alpha: space.derive_genotype(softmax_weights(alpha)),
        fuse_phases=config.search.get("fuse_phases", True),
    )
