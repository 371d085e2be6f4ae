"""DARTS: Differentiable Architecture Search (Liu, Simonyan & Yang, ICLR 2019).

The continuous relaxation (Eq. 2): every edge of the supernet mixes all candidate ops with
weights ``softmax(alpha_edge)``; ``alpha`` (normal and reduce, each ``[14, 8]``) is learnt
by the bilevel update of :mod:`jnas.strategies.bilevel` on the validation half, the weights
by SGD on the training half. ``config.search.hypergradient`` picks first order (``first``,
xi = 0), the paper's second order (``fd``) or our exact autodiff variant (``exact``).
The genotype keeps, per node, the two strongest incoming edges and their strongest
non-``none`` op (Sec. 2.4), compared in float64 log-softmax on the host.
"""

from __future__ import annotations

import ml_collections

from jnas.spaces.darts import log_softmax64
from jnas.strategies import oneshot
from jnas.strategies.base import STRATEGIES
from jnas.strategies.oneshot import softmax_weights


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
    space = oneshot.space_from_config(config)
    return oneshot.OneShotSearch.from_config(
        config,
        steps_per_epoch=steps_per_epoch,
        axis_name=axis_name,
        model=oneshot.supernet_from_config(config, space, num_classes, axis_name),
        init_alpha=lambda key: space.init_alpha(key, config.search.alpha_init_scale),
        arch_fn=lambda alpha, key, step: softmax_weights(alpha),
        eval_arch_fn=softmax_weights,
        op_weights_fn=softmax_weights,
        derive_fn=lambda alpha: space.derive(log_softmax64(alpha)),
    )


def budget(config: ml_collections.ConfigDict, *, epochs: int, layers: int) -> None:
    """The comparison's budget with the paper's recipe: ``epochs`` of architecture updates
    from the first step at weight lr 0.025 (the Fashion-MNIST config is the quickstart's,
    which adds a weight-only first epoch and lr 0.1)."""
    config.model.layers = layers
    config.search.epochs = epochs
    config.search.arch_start_epoch = 0
    config.optim_w.lr = 0.025


STRATEGIES.register("darts", kind="gradient")(
    oneshot.GradientStrategy(
        build=build,
        title="DARTS (1st order)",
        configs={"cifar10": "darts_cifar10", "fashion_mnist": "darts_fashion_mnist"},
        budget=budget,
    )
)
