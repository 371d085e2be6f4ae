"""P-DARTS: Progressive Differentiable Architecture Search (Chen et al., ICCV 2019).

DARTS searches a shallow supernet (8 cells) and evaluates a deep one (20 cells). P-DARTS
closes that depth gap progressively: the search runs in stages whose supernets grow deeper
(5, 11, 17 cells) while the candidate ops per edge shrink (8, 5, 3), so that memory stays
bounded. After each stage, the ops with the lowest ``softmax(alpha)`` on every edge are
dropped (:func:`prune`) and the next stage builds a fresh supernet (new weights, new
``alpha``) with only the survivors.

Two regularisers against skip-connection collapse (Sec. 3.3):

* operation-level dropout after each (stride-1) skip connection
  (:class:`jnas.spaces.edges.SkipDropMixedOp`), its rate set per stage (rising: 0.1, 0.4,
  0.7) and, within a stage, as the official code: ``rate * (E - e - 1) / E`` in the
  weight-only warm-up epochs ``e < 10``, then ``rate * exp(-0.2 (e - 10))``;
* at derivation, at most ``M = 2`` skip connections in the normal cell
  (:func:`limit_skips`, the official ``delete_min_sk_prob`` loop).

Each stage is 25 epochs whose first 10 train only the weights (the architecture step is
skipped, :class:`jnas.strategies.warmup.WarmupSearch`); Adam for alpha (lr 6e-4) with its
gradient norm clipped at 5, as the official ``train_search.py``.

Stages: the registered strategy names :func:`stages` (one config per stage) and
:func:`transfer`; the runner builds each stage's search with ``build(stage_config, ...,
carry=...)``, where ``carry`` (the ops kept per edge, JSON) is what :func:`transfer` returned
at the end of the previous stage. It checkpoints the carry, so a run killed in stage 2
resumes in stage 2. The genotype is derived from ``log_softmax(alpha)`` in float64, each
edge choosing only among the ops it still has.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jnas.errors import ConfigError
from jnas.spaces import edges
from jnas.spaces.darts import CELL_TYPES, DartsSpace, log_softmax64
from jnas.spaces.genotype import Genotype
from jnas.strategies import oneshot
from jnas.strategies.base import STRATEGIES
from jnas.strategies.oneshot import softmax_weights
from jnas.strategies.warmup import WarmupSearch

SKIP = "skip_connect"


def check_config(config: ml_collections.ConfigDict) -> None:
    """Reject an inconsistent stage list before anything compiles."""
    p = config.pdarts
    n_prims = len(config.model.primitives)
    num_ops = tuple(int(n) for n in p.num_ops)
    lists = {k: tuple(p[k]) for k in ("num_ops", "add_layers", "add_width", "skip_dropout")}
    if len({len(v) for v in lists.values()}) != 1:
        raise ConfigError(
            "pdarts.num_ops, add_layers, add_width and skip_dropout need one entry per stage, "
            f"got {', '.join(f'{k}={v}' for k, v in lists.items())}"
        )
    if not num_ops or num_ops[0] != n_prims:
        raise ConfigError(
            f"pdarts.num_ops must start with all {n_prims} candidate ops (model.primitives), "
            f"got {num_ops}"
        )
    if any(b >= a for a, b in zip(num_ops, num_ops[1:])):
        raise ConfigError(
            f"pdarts.num_ops={num_ops}: the op counts per edge must shrink from stage to "
            "stage (P-DARTS: 8, 5, 3)"
        )
    if num_ops[-1] < 2:
        raise ConfigError(
            f"pdarts.num_ops={num_ops}: the last stage needs at least 2 ops per edge (the "
            "genotype takes the strongest non-'none' one)"
        )
    if any(not 0.0 <= r < 1.0 for r in lists["skip_dropout"]):
        raise ConfigError(
            f"pdarts.skip_dropout rates must be in [0, 1), got {lists['skip_dropout']}"
        )
    if p.max_skips < 0:
        raise ConfigError(f"pdarts.max_skips must be >= 0, got {p.max_skips}")
    if not 0 <= p.stage < len(num_ops):
        raise ConfigError(f"pdarts.stage={p.stage} is not a stage of {len(num_ops)}")


def stages(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
    """One config per stage (``pdarts.stage`` set); each runs ``search.epochs`` epochs."""
    check_config(config)
    out = []
    for s in range(len(config.pdarts.num_ops)):
        c = config.copy_and_resolve_references()
        c.pdarts.stage = s
        out.append(c)
    return out


def skip_dropout_rate(rate: float, epochs: int, warmup_epochs: int, decay: float = 0.2):
    """The official within-stage schedule of the skip-connection dropout rate.

    Returns:
      ``epoch -> p``: ``rate * (epochs - e - 1) / epochs`` for ``e < warmup_epochs``, then
      ``rate * exp(-decay * (e - warmup_epochs))``.
    """

    def p(epoch):
        e = jnp.asarray(epoch, jnp.float32)
        warm = rate * (epochs - e - 1) / epochs
        later = rate * jnp.exp(-decay * (e - warmup_epochs))
        return jnp.where(e < warmup_epochs, warm, later)

    return p


def prune(weights: np.ndarray, edge_ops, keep: int) -> list[list[str]]:
    """Keep the ``keep`` ops of largest weight on every edge (``get_min_k`` of the official
    code: the smallest are dropped, the lower index first on ties).

    Args:
      weights: ``[num_edges, n]`` op weights of one cell type, or any increasing function of
        them (``log_softmax(alpha)`` in float64).
      edge_ops: the ``n`` op names of each edge, in the order of ``weights``' columns.
      keep: ops to keep per edge.

    Returns:
      Per edge, the kept op names in their original order.
    """
    weights = np.asarray(weights)
    out = []
    for w, ops in zip(weights, edge_ops):
        if len(ops) != len(w) or keep > len(ops):
            raise ValueError(f"cannot keep {keep} of {len(ops)} ops with {len(w)} weights")
        order = sorted(range(len(ops)), key=lambda i: w[i])  # stable: ties drop lower index
        dropped = set(order[: len(ops) - keep])
        out.append([op for i, op in enumerate(ops) if i not in dropped])
    return out


def expand_weights(weights: np.ndarray, edge_ops, primitives, fill: float = 0.0) -> np.ndarray:
    """``[num_edges, n]`` weights of each edge's ops to ``[num_edges, len(primitives)]``
    (``fill`` for dropped ops: 0 for weights, ``-inf`` for log-weights)."""
    weights = np.asarray(weights)
    full = np.full((len(edge_ops), len(primitives)), fill, weights.dtype)
    for e, ops in enumerate(edge_ops):
        for i, op in enumerate(ops):
            full[e, primitives.index(op)] = weights[e, i]
    return full


def candidate_mask(edge_ops, primitives) -> np.ndarray:
    """bool ``[num_edges, len(primitives)]``: the ops each edge still has."""
    return np.array([[p in ops for p in primitives] for ops in edge_ops])


def limit_skips(
    space: DartsSpace, weights: dict[str, np.ndarray], max_skips: int, candidates=None
) -> Genotype:
    """Derive the genotype with at most ``max_skips`` skip connections in the normal cell.

    The official refinement: while the derived normal cell has too many skip connections,
    the chosen skip connection with the smallest weight is removed (its weight set to the
    lowest value, ``-inf``), and ops and edges are chosen again (DARTS rule). A skip
    connection already at ``-inf`` (the edge has no other op) is not chosen for removal;
    when none is left to remove, the genotype is returned as it is.

    Args:
      space: the cell space (all primitives, as the columns of ``weights``).
      weights: per cell type ``[num_edges, num_ops]`` op strengths (weights, or
        log-weights in float64).
      max_skips: M (2 in P-DARTS).
      candidates: per cell type, the ops each edge may pick (``DartsSpace.derive``).

    Returns:
      The :class:`Genotype`.
    """
    weights = {t: np.array(w, dtype=np.float64) for t, w in weights.items()}
    genotype = space.derive(weights, candidates=candidates)
    if SKIP not in space.primitives:
        return genotype
    k_skip = space.primitives.index(SKIP)
    edge_id = {e: n for n, e in enumerate(space.edges)}
    per_node = space.edges_per_node
    for _ in range(space.num_edges + 1):
        chosen = [
            edge_id[(i, k // per_node)] for k, (op, i) in enumerate(genotype.normal) if op == SKIP
        ]
        removable = [e for e in chosen if weights["normal"][e, k_skip] > -np.inf]
        if len(chosen) <= max_skips or not removable:
            return genotype
        weakest = min(removable, key=lambda e: (weights["normal"][e, k_skip], e))
        weights["normal"][weakest, k_skip] = -np.inf
        genotype = space.derive(weights, candidates=candidates)
    raise AssertionError("the skip limit did not converge")  # each pass removes one skip


@dataclasses.dataclass(frozen=True)
class PdartsSearch(WarmupSearch):
    """One P-DARTS stage.

    Attributes:
      stage: the stage index.
      edge_ops: ``((cell_type, ops_per_edge), ...)``: the candidate op names of every edge
        in this stage (a tuple, so that the search stays hashable for ``jax.jit``).
      keep_next: ops per edge in the next stage (None in the last stage).
    """

    stage: int = 0
    edge_ops: tuple = ()
    keep_next: int | None = None


def transfer(searcher: PdartsSearch, state: oneshot.SearchState) -> dict[str, list]:
    """What the next stage needs: per cell type, the ops kept on every edge (JSON-able)."""
    if searcher.keep_next is None:
        raise ValueError("the last P-DARTS stage has no next stage")
    weights = log_softmax64(jax.device_get(state.alpha))
    edge_ops = dict(searcher.edge_ops)
    return {t: prune(weights[t], edge_ops[t], searcher.keep_next) for t in CELL_TYPES}


def build(
    config: ml_collections.ConfigDict,
    *,
    num_classes: int,
    steps_per_epoch: int,
    axis_name: str | None = None,
    carry: dict | None = None,
) -> PdartsSearch:
    """Build the search of stage ``config.pdarts.stage`` (``experiments/configs/pdarts_*.py``).

    Args:
      config: the DARTS config sections plus ``pdarts`` (``stage``, ``num_ops``,
        ``add_layers``, ``add_width``, ``skip_dropout``, ``max_skips``).
      num_classes: classes of the data set.
      steps_per_epoch: search steps per epoch.
      axis_name: the pmap axis name when data-parallel, else None.
      carry: the previous stage's :func:`transfer` (required after the first stage).

    Returns:
      The :class:`PdartsSearch` of that stage.
    """
    check_config(config)
    p = config.pdarts
    stage = int(p.stage)
    num_ops = tuple(int(n) for n in p.num_ops)
    space = oneshot.space_from_config(config)
    all_ops = space.primitives
    if stage == 0:
        edge_ops = {t: (all_ops,) * space.num_edges for t in CELL_TYPES}
        primitives: Any = all_ops  # one op set everywhere: edges run in vmapped groups
    else:
        if carry is None:
            raise ValueError(f"P-DARTS stage {stage} needs the ops kept by stage {stage - 1}")
        edge_ops = {t: tuple(tuple(ops) for ops in carry[t]) for t in CELL_TYPES}
        for t in CELL_TYPES:
            bad = [ops for ops in edge_ops[t] if len(ops) != num_ops[stage]]
            if len(edge_ops[t]) != space.num_edges or bad:
                raise ValueError(
                    f"carry for stage {stage} ({t}) does not have {num_ops[stage]} "
                    f"ops on each of {space.num_edges} edges"
                )
        primitives = dict(edge_ops)
    n = num_ops[stage]
    model = oneshot.supernet_from_config(
        config,
        space,
        num_classes,
        axis_name,
        C=space.C + int(p.add_width[stage]),
        layers=space.layers + int(p.add_layers[stage]),
        primitives=primitives,
        mixed_op=edges.SkipDropMixedOp,
    )
    epochs, warm = config.search.epochs, config.search.arch_start_epoch
    drop_fn = skip_dropout_rate(float(p.skip_dropout[stage]), epochs, warm)
    scale = config.search.alpha_init_scale
    candidates = {t: candidate_mask(edge_ops[t], all_ops) for t in CELL_TYPES}

    def init_alpha(key):
        keys = jax.random.split(key, len(CELL_TYPES))
        return {
            t: scale * jax.random.normal(k, (space.num_edges, n)) for t, k in zip(CELL_TYPES, keys)
        }

    def arch(alpha, rate):
        w = softmax_weights(alpha)
        return {
            t: {"ops": w[t], "skip_drop": jnp.full((space.num_edges,), rate)} for t in CELL_TYPES
        }

    def op_weights(alpha):  # over all primitives, zero for dropped ops
        w = jax.device_get(softmax_weights(alpha))
        return {t: expand_weights(w[t], edge_ops[t], all_ops) for t in CELL_TYPES}

    def derive(alpha) -> Genotype:
        # Log-weights in float64, -inf for the ops this stage no longer has; an edge picks
        # only among its own ops.
        w = log_softmax64(alpha)
        w = {t: expand_weights(w[t], edge_ops[t], all_ops, fill=-np.inf) for t in CELL_TYPES}
        return limit_skips(space, w, int(p.max_skips), candidates)

    return PdartsSearch.from_config(
        config,
        steps_per_epoch=steps_per_epoch,
        axis_name=axis_name,
        model=model,
        init_alpha=init_alpha,
        arch_fn=lambda alpha, key, step: arch(alpha, drop_fn(step // steps_per_epoch)),
        eval_arch_fn=lambda alpha: arch(alpha, 0.0),
        op_weights_fn=op_weights,
        derive_fn=derive,
        stage=stage,
        edge_ops=tuple(edge_ops.items()),
        keep_next=num_ops[stage + 1] if stage + 1 < len(num_ops) else None,
    )


def budget(config: ml_collections.ConfigDict, *, epochs: int, layers: int) -> None:
    """The comparison's budget: ``epochs`` in all over the three stages (``epochs // 3``
    each, at least 1), the first 10/25 of each stage a weight warm-up; the stages keep their
    own depths (``layers`` is not used)."""
    del layers
    config.search.epochs = max(1, epochs // 3)
    config.search.arch_start_epoch = round(config.search.epochs * 10 / 25)


STRATEGIES.register("pdarts", kind="gradient")(
    oneshot.GradientStrategy(
        build=build,
        title="P-DARTS",
        configs={"cifar10": "pdarts_cifar10", "fashion_mnist": "pdarts_fashion_mnist"},
        stages=stages,
        transfer=transfer,
        budget=budget,
        check_config=check_config,
    )
)
