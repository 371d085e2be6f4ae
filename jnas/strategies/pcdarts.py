"""PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search (Xu et al.,
ICLR 2020).

Two changes to DARTS, both in the supernet:

* **Partial channel connections** (Sec. 3.2, Eq. 3): on every edge only ``1/K`` of the
  channels go through the mixed op, the others bypass it, and a channel shuffle follows
  (:class:`jnas.spaces.edges.PartialChannelMixedOp`). The ops' activations, which dominate
  the supernet's memory, shrink about K-fold; the paper grows the batch to 256.
* **Edge normalization** (Sec. 3.3, Eq. 4): a second set of architecture parameters
  ``beta``, one per edge, softmax-normalized over the edges entering each node, scales each
  edge's output::

      x_j = sum_{i<j} softmax_{i' < j}(beta_{i'j})_i * f_{ij}(x_i)

  The genotype is then derived from ``softmax(alpha)_{ij,o} * softmax(beta)_{ij}`` with
  the DARTS rule (strongest two incoming edges per node, strongest non-``none`` op), as
  the official ``genotype()`` does (compared as log-weights in float64).

The search follows the official ``train_search.py``: architecture updates (Adam, lr 6e-4,
first order by default) start after a 15-epoch warm-up of the weights alone (the warm-up
skips the architecture step: :class:`jnas.strategies.warmup.WarmupSearch`). With ``K = 1``
and edge normalization off this is exactly DARTS.

``alpha`` is ``{"ops": {"normal", "reduce"}}`` plus ``"edges": {"normal", "reduce"}``
(``beta``, one value per edge) when edge normalization is on.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jnas.errors import ConfigError
from jnas.spaces import edges
from jnas.spaces.darts import CELL_TYPES, log_softmax64
from jnas.strategies import oneshot
from jnas.strategies.base import STRATEGIES
from jnas.strategies.oneshot import softmax_weights
from jnas.strategies.warmup import WarmupSearch


def edge_weights(beta: jax.Array, n_nodes: int) -> jax.Array:
    """``softmax(beta)`` over the edges entering each node (edges in DARTS order).

    Args:
      beta: ``[num_edges]``, node ``j`` owning ``j + 2`` consecutive entries.
      n_nodes: intermediate nodes.

    Returns:
      ``[num_edges]`` weights summing to one per node.
    """
    parts, start = [], 0
    for j in range(n_nodes):
        parts.append(jax.nn.softmax(beta[start : start + j + 2]))
        start += j + 2
    return jnp.concatenate(parts)


def log_edge_weights64(beta, n_nodes: int) -> np.ndarray:
    """``log`` of :func:`edge_weights` on the host in float64 (``log_softmax`` per node)."""
    beta = np.asarray(beta, np.float64)
    parts, start = [], 0
    for j in range(n_nodes):
        parts.append(log_softmax64(beta[start : start + j + 2]))
        start += j + 2
    return np.concatenate(parts)


def check_config(config: ml_collections.ConfigDict) -> None:
    """Reject a K that does not divide the channels, before anything compiles."""
    k, c = config.pcdarts.k, config.model.C
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(f"pcdarts.k must be a positive integer, got {k!r}")
    if c % k:
        raise ConfigError(
            f"pcdarts.k={k} must divide the channel count model.C={c} (every edge sends C/k "
            f"of its C, 2C or 4C channels through the ops); choose k among "
            f"{[d for d in range(1, c + 1) if c % d == 0]}"
        )


def build(
    config: ml_collections.ConfigDict,
    *,
    num_classes: int,
    steps_per_epoch: int,
    axis_name: str | None = None,
) -> WarmupSearch:
    """Build the PC-DARTS search from a config (``experiments/configs/pcdarts_*.py``).

    Args:
      config: the DARTS config sections plus ``pcdarts`` (``k``, ``edge_norm``).
      num_classes: classes of the data set.
      steps_per_epoch: search steps per epoch.
      axis_name: the pmap axis name when data-parallel, else None.

    Returns:
      The :class:`~jnas.strategies.warmup.WarmupSearch`.
    """
    check_config(config)
    p = config.pcdarts
    space = oneshot.space_from_config(config)
    n_nodes = space.n_nodes
    model = oneshot.supernet_from_config(
        config, space, num_classes, axis_name, mixed_op=edges.partial_channel_op(p.k)
    )
    scale = config.search.alpha_init_scale

    def init_alpha(key):
        k_ops, k_edges = jax.random.split(key)
        alpha = {"ops": space.init_alpha(k_ops, scale)}
        if p.edge_norm:  # beta: 1e-3 * N(0, 1) per edge, as the official code
            keys = jax.random.split(k_edges, len(CELL_TYPES))
            alpha["edges"] = {
                t: scale * jax.random.normal(kt, (space.num_edges,))
                for t, kt in zip(CELL_TYPES, keys)
            }
        return alpha

    def arch(alpha):
        ops = softmax_weights(alpha["ops"])
        if "edges" not in alpha:
            return {t: {"ops": ops[t]} for t in CELL_TYPES}
        return {
            t: {"ops": ops[t], "edge": edge_weights(alpha["edges"][t], n_nodes)} for t in CELL_TYPES
        }

    def op_weights(alpha):
        """Per cell type the op softmax; with edge normalization also the edge weights."""
        a = arch(alpha)
        out = {t: a[t]["ops"] for t in CELL_TYPES}
        if "edges" in alpha:
            out.update({f"{t}_edges": a[t]["edge"] for t in CELL_TYPES})
        return out

    def derive(alpha):
        # The official genotype(): W[e, o] = softmax(alpha)[e, o] * softmax(beta)[e], compared
        # here as log_softmax(alpha) + log_softmax(beta) in float64.
        w = log_softmax64(alpha["ops"])
        if "edges" in alpha:
            w = {
                t: w[t] + log_edge_weights64(alpha["edges"][t], n_nodes)[:, None]
                for t in CELL_TYPES
            }
        return space.derive(w)

    return WarmupSearch.from_config(
        config,
        steps_per_epoch=steps_per_epoch,
        axis_name=axis_name,
        model=model,
        init_alpha=init_alpha,
        arch_fn=lambda alpha, key, step: arch(alpha),
        eval_arch_fn=arch,
        op_weights_fn=op_weights,
        derive_fn=derive,
    )


def budget(config: ml_collections.ConfigDict, *, epochs: int, layers: int) -> None:
    """The comparison's budget: ``epochs`` in all, 15 of 50 of them a weight warm-up, and
    the paper's lr 0.1 at batch 256 scaled linearly to ``config.search.batch_size``."""
    config.model.layers = layers
    config.search.epochs = epochs
    config.search.arch_start_epoch = round(epochs * 15 / 50)
    config.optim_w.lr = 0.1 * config.search.batch_size / 256


STRATEGIES.register("pcdarts", kind="gradient")(
    oneshot.GradientStrategy(
        build=build,
        title="PC-DARTS",
        configs={"cifar10": "pcdarts_cifar10", "fashion_mnist": "pcdarts_fashion_mnist"},
        budget=budget,
        check_config=check_config,
    )
)
