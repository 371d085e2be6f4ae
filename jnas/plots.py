"""Plots for notebooks and reports: the op weights of every edge as heatmaps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def alpha_heatmaps(
    op_weights: Mapping[str, np.ndarray],
    primitives: Sequence[str],
    edges: Sequence[tuple[int, int]] | None = None,
):
    """One heatmap per cell type: rows are edges ``(source -> node)``, columns ops.

    Args:
      op_weights: ``{cell_type: [num_edges, num_ops]}``, e.g. softmax(alpha) or the
        ``alpha.json`` a search writes.
      primitives: the op names (columns).
      edges: ``(source_state, target_node)`` per row; by default the DARTS order.

    Returns:
      The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    types = list(op_weights)
    n_edges = np.asarray(op_weights[types[0]]).shape[0]
    if edges is None:
        edges, j = [], 0
        while len(edges) < n_edges:
            edges += [(i, j) for i in range(j + 2)]
            j += 1
    fig, axes = plt.subplots(1, len(types), figsize=(5 * len(types), 0.35 * n_edges + 2))
    axes = np.atleast_1d(axes)
    for ax, t in zip(axes, types):
        w = np.asarray(op_weights[t])
        im = ax.imshow(w, cmap="viridis", aspect="auto")
        ax.set_title(f"{t} cell")
        ax.set_xticks(range(len(primitives)), primitives, rotation=60, ha="right", fontsize=8)
        labels = [f"{_state(i)} -> {j}" for i, j in edges[:n_edges]]
        ax.set_yticks(range(n_edges), labels, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def _state(i: int) -> str:
    return {0: "c_{k-2}", 1: "c_{k-1}"}.get(i, str(i - 2))
