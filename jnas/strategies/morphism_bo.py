"""Bayesian optimisation over network morphisms (Auto-Keras: Jin, Song & Hu, KDD 2019), and the
two baselines a reader needs to believe it: a random morphism walk and random search from
scratch over the same graph space.

These strategies are of kind ``"morphism"`` (:data:`jnas.strategies.base.KINDS`): they search
the graph space of :mod:`jnas.spaces.graph` by proposing, each round, children that are
either reached from an already-trained network by a sequence of function-preserving edits
(:mod:`jnas.spaces.morphism`; the child then starts from its parent's trained weights) or,
for random search, drawn from the space and trained from scratch. Their host loop is
:func:`jnas.runner.morphism.search`. A strategy keeps no state of its own: everything it
knows is the list of trained networks (:class:`Trained`), which the host loop rebuilds from
its history, so a resumed search asks exactly what an uninterrupted one would.

**The edit distance** (:func:`edit_distance`, :func:`distance_matrix`) follows Auto-Keras
0.3.7's ``autokeras/bayesian.py`` (the last release with the Bayesian searcher in this
form; 0.2.x kept convolutional and dense widths in two lists):

* the layer-sequence distance is the edit distance between the two lists of weighted layers
  of the main chain, insertion and deletion costing 1 and a substitution the layer distance;
  0.3.7's layer distance is 1 between layers of different kinds and otherwise the mean
  relative difference of their attributes, ``|a - b| / max(a, b)``; a
  :class:`~jnas.spaces.graph.Descriptor` records one attribute, the width (filters or units),
  so two layers of one kind are ``|w_a - w_b| / max(w_a, w_b)`` apart (0.2.x's width distance;
  0.3.7 also averaged over kernel size and stride, which the descriptor leaves out, and gave
  two dense layers distance 0, which would make widening a dense layer invisible to the GP);
* the skip-connection distance matches the two sets of skip connections optimally
  (:func:`scipy.optimize.linear_sum_assignment`), a pair of connections ``(u, v, kind)`` being
  ``1`` apart if their kinds differ and otherwise
  ``(|u_a - u_b| + |l_a - l_b|) / (max(u_a, u_b) + max(l_a, l_b))`` with ``l = |v - u|``,
  plus 1 for every connection left unmatched;
* ``d = layers + lambda * skips`` with ``lambda = kernel_lambda`` (0.3.7's
  ``Constant.KERNEL_LAMBDA = 1.0``).

:func:`distance_matrix` computes all pairs at once, once per pair of distinct layer lists and
of distinct skip sets: the dynamic programme row by row over every pair (numpy for a few
thousand pairs, XLA beyond), the matching with shared connections paired first, then a
dynamic programme over subsets for up to 4 remaining connections, scipy's assignment beyond
(:func:`_skips_pairs`); :func:`edit_distance` is the one-pair reference written as the paper
and the old code do, and the tests hold the two equal. Written by hand (no library computes
a batch of small assignments or edit distances) and measured by ``benchmarks/morphism_bo.py``.

**The kernel.** ``exp(-d^2)`` of an edit distance need not be positive definite. The paper
makes it so with Bourgain's embedding: anchor sets ``S_c`` of the training architectures
(for each level ``i = 0 .. ceil(log2 n - 1)``, ``ceil(ln n)`` sets of ``2^i`` architectures
drawn uniformly with replacement) give each architecture the vector
``e(x)_c = min_{s in S_c} d(x, s)``, whose Euclidean distances approximate ``d`` (every
coordinate is 1-Lipschitz in ``d``); the kernel is ``k(x, y) = exp(-|e(x) - e(y)|^2 / C)``
for ``C`` coordinates (0.3.7's ``rbf_kernel`` with scikit-learn's default ``gamma = 1 / C``;
``|e(x) - e(y)|^2 / C <= d(x, y)^2``), a squared-exponential kernel on vectors and so
positive semi-definite. The same kernel fits the GP and predicts with it (0.3.7 fitted with
this one and predicted with ``exp(-d^2)`` of the raw distance; not copied). A candidate is
embedded with its distances to the same anchors. Two more departures from 0.3.7, both bugs
there: its loop over sets shadowed its own count (level ``i`` got ``ceil(ln n) - i`` sets),
and with one training architecture it returned the distance matrix as the kernel.

**The GP** is tinygp's :class:`tinygp.GaussianProcess` with that kernel
(``kernels.ExpSquared(scale=sqrt(C / 2))``) on the embedding vectors, conditioned on the
standardised validation accuracies (zero mean, unit variance; the prediction is mapped back),
with ``noise`` added to the diagonal (0.3.7: ``1e-10`` on raw accuracies, in float64; here
``1e-6`` by default on standardised values). It is refitted from scratch each round (the
anchor sets change with ``n``; refitting a few hundred points costs milliseconds) and runs in
float64 inside ``jax.enable_x64`` (a scoped switch: nothing process-wide changes).

**The acquisition** is the upper confidence bound ``mu + beta sigma`` (the paper minimises a
cost with ``mu - beta sigma``; we maximise accuracy; ``beta = 2.576`` as 0.3.7), optimised by
the paper's tree-structured search with simulated annealing (0.3.7's
``BayesianOptimizer.generate``): a priority queue starts with every trained network, valued
by its accuracy; the temperature starts at 1 and is multiplied by ``decay`` (0.9) after each
pop until it falls to ``t_min`` (1e-4: 88 pops at most); a popped network (trained, or a
candidate reached by edits) is expanded when ``exp(min((value - best_acq) / T, 1)) >= U(0, 1)``:
up to ``n_neighbours`` (8) of its possible edits, drawn at random, each giving a candidate
that is valued by its UCB and queued with the trained ancestor and the whole sequence of
edits from it; the best candidate seen is proposed. Candidates whose graph was trained or
already seen are skipped. Several children of one round (``children_per_round > 1``) are
chosen one after the other, each earlier choice added to the GP with its predicted mean as
its value ("kriging believer").

Every random draw takes an explicit key: the anchor sets, the edits drawn at each expansion
and the annealing's uniform draws come from one key per proposal.

**Multi-fidelity.** With ``config.search.schedule = "hyperband"`` the host loop runs
Hyperband's brackets and asks these strategies only for each bracket's new networks, showing
them the networks evaluated at one budget (the largest with enough evaluations): ``morphism_bo``
then is BOHB over morphisms, its GP in place of BOHB's TPE model
(:mod:`jnas.strategies.morphism_hyperband`).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from jnas.strategies.base import STRATEGIES

# Auto-Keras 0.3.7's constants (autokeras/constant.py) and SA decay (bayesian.py).
KERNEL_LAMBDA = 1.0
BETA = 2.576
T_MIN = 1e-4
DECAY = 0.9
N_NEIGHBOURS = 8

_KINDS = {"conv": 0, "dense": 1}
_SKIP_KINDS = {"add": 0, "concat": 1}


# --------------------------------------------------------------------------------------------
# The edit distance: one pair (the reference), and all pairs at once.


def layer_distance(a: tuple[str, int], b: tuple[str, int]) -> float:
    """Two layers ``(kind, width)``: 1 if the kinds differ, else ``|wa - wb| / max(wa, wb)``."""
    if a[0] != b[0]:
        return 1.0
    wa, wb = float(a[1]), float(b[1])
    top = max(wa, wb)
    return 0.0 if top == 0 else abs(wa - wb) / top


def layers_distance(list_a, list_b) -> float:
    """The edit distance between two layer lists (insert / delete 1, substitute
    :func:`layer_distance`), by the dynamic programme of Auto-Keras 0.3.7."""
    la, lb = len(list_a), len(list_b)
    f = np.zeros((la + 1, lb + 1))
    f[:, 0] = np.arange(la + 1)
    f[0, :] = np.arange(lb + 1)
    for i in range(1, la + 1):
        for j in range(1, lb + 1):
            f[i, j] = min(
                f[i, j - 1] + 1,
                f[i - 1, j] + 1,
                f[i - 1, j - 1] + layer_distance(list_a[i - 1], list_b[j - 1]),
            )
    return float(f[la, lb])


def skip_distance(a, b) -> float:
    """Two skip connections ``(from, to, kind)`` (Auto-Keras 0.3.7)."""
    if a[2] != b[2]:
        return 1.0
    len_a, len_b = abs(a[1] - a[0]), abs(b[1] - b[0])
    den = max(a[0], b[0]) + max(len_a, len_b)
    return 0.0 if den == 0 else (abs(a[0] - b[0]) + abs(len_a - len_b)) / den


def skips_distance(list_a, list_b) -> float:
    """Optimal matching of two sets of skip connections (``linear_sum_assignment``) plus 1 for
    each connection left unmatched."""
    cost = np.array([[skip_distance(a, b) for b in list_b] for a in list_a]).reshape(
        len(list_a), len(list_b)
    )
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum()) + abs(len(list_a) - len(list_b))


def edit_distance(x, y, kernel_lambda: float = KERNEL_LAMBDA) -> float:
    """The Auto-Keras edit distance between two descriptors (``layers``, ``skips``)."""
    return layers_distance(x.layers, y.layers) + kernel_lambda * skips_distance(x.skips, y.skips)


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Descriptors as padded arrays (for :func:`distance_matrix`).

    Attributes:
      kinds: int8 ``[N, L]`` layer kinds (0 conv, 1 dense, -1 padding).
      widths: float64 ``[N, L]`` layer widths (1 in padding).
      num_layers: int ``[N]``.
      skip_from, skip_len: float64 ``[N, S]`` each connection's start and length.
      skip_kinds: int8 ``[N, S]`` (0 add, 1 concat, -1 padding).
      num_skips: int ``[N]``.
      skip_key: int64 ``[N, S]``: one number per connection, its kind, from, length and
        occurrence (0 for its first in the descriptor, 1 for a second copy, ...); -1 in
        padding.
    """

    kinds: np.ndarray
    widths: np.ndarray
    num_layers: np.ndarray
    skip_from: np.ndarray
    skip_len: np.ndarray
    skip_kinds: np.ndarray
    num_skips: np.ndarray
    skip_key: np.ndarray

    def __len__(self) -> int:
        return int(self.num_layers.shape[0])

    def take(self, index) -> Encoded:
        return Encoded(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


def encode(descriptors: Sequence[Any]) -> Encoded:
    """Padded arrays of descriptors (each with ``layers`` and ``skips``).

    Raises:
      ValueError: an unknown layer or skip-connection kind, or a negative width.
    """
    n = len(descriptors)
    big_l = max([len(d.layers) for d in descriptors] + [1])
    big_s = max([len(d.skips) for d in descriptors] + [1])
    kinds = np.full((n, big_l), -1, np.int8)
    widths = np.ones((n, big_l))
    skip_from, skip_len = np.zeros((n, big_s)), np.zeros((n, big_s))
    skip_kinds = np.full((n, big_s), -1, np.int8)
    skip_key = np.full((n, big_s), -1, np.int64)
    for i, d in enumerate(descriptors):
        for j, (kind, width) in enumerate(d.layers):
            if kind not in _KINDS or not width >= 0:
                raise ValueError(f"descriptor {i}: layer {j} is {(kind, width)!r}")
            kinds[i, j], widths[i, j] = _KINDS[kind], float(width)
        for j, (u, v, kind) in enumerate(d.skips):
            if kind not in _SKIP_KINDS or not 0 <= u < 1 << 20 or not 0 < abs(v - u) < 1 << 20:
                raise ValueError(f"descriptor {i}: skip connection {j} is {(u, v, kind)!r}")
            skip_from[i, j], skip_len[i, j] = float(u), float(abs(v - u))
            skip_kinds[i, j] = _SKIP_KINDS[kind]
            copy = d.skips[:j].count((u, v, kind))
            skip_key[i, j] = ((copy * 2 + _SKIP_KINDS[kind]) << 40) + (int(u) << 20) + abs(v - u)
    return Encoded(
        kinds,
        widths,
        np.array([len(d.layers) for d in descriptors], np.int64).reshape(n),
        skip_from,
        skip_len,
        skip_kinds,
        np.array([len(d.skips) for d in descriptors], np.int64).reshape(n),
        skip_key,
    )


def _layers_numpy(ka, wa, la, kb, wb, lb) -> np.ndarray:
    """Layer-sequence distances of aligned pairs (rows of ``[P, L]`` arrays), the programme of
    :func:`layers_distance` row by row for every pair at once: row ``i`` of the table is
    ``F[i, j] = min(F[i, j-1] + 1, g[j])`` with ``g[j] = min(F[i-1, j] + 1,
    F[i-1, j-1] + c(a_i, b_j))``, i.e. ``F[i, j] = j + cummin_{k <= j} (g[k] - k)``."""
    p, lb_max = kb.shape
    j = np.arange(lb_max + 1, dtype=np.float64)
    row = np.broadcast_to(j, (p, lb_max + 1)).copy()  # F[0, j] = j
    out = lb.astype(np.float64)  # la = 0
    for i in range(1, int(la.max(initial=0)) + 1):
        wai, kai = wa[:, i - 1, None], ka[:, i - 1, None]
        cost = np.where(kai == kb, np.abs(wai - wb) / np.maximum(np.maximum(wai, wb), 1e-12), 1.0)
        g = np.empty_like(row)
        g[:, 0] = i
        np.minimum(row[:, 1:] + 1.0, row[:, :-1] + cost, out=g[:, 1:])
        row = np.minimum.accumulate(g - j, axis=1) + j
        done = la == i
        out[done] = row[done, lb[done]]
    return out


@jax.jit
def _layers_jax(ka, wa, la, kb, wb, lb):
    """:func:`_layers_numpy` in XLA (float32) on transposed ``[L, P]`` arrays: a loop over
    the rows of ``a``, each row's ``L_b`` cells unrolled (a cumulative minimum by
    ``lax.cummin`` ran 4x slower on XLA:CPU)."""
    import jax.numpy as jnp
    from jax import lax

    p, lb_max = kb.shape[1], kb.shape[0]
    row0 = jnp.broadcast_to(jnp.arange(lb_max + 1, dtype=jnp.float32)[:, None], (lb_max + 1, p))

    def body(i, carry):
        row, out = carry
        kai = lax.dynamic_index_in_dim(ka, i - 1, 0, keepdims=True)
        wai = lax.dynamic_index_in_dim(wa, i - 1, 0, keepdims=True)
        cost = jnp.where(
            kai == kb, jnp.abs(wai - wb) / jnp.maximum(jnp.maximum(wai, wb), 1e-12), 1.0
        )
        diag = jnp.minimum(row[1:] + 1.0, row[:-1] + cost)  # [Lb, P]
        cells = [jnp.full((p,), i, jnp.float32)]
        for jj in range(lb_max):
            cells.append(jnp.minimum(cells[-1] + 1.0, diag[jj]))
        row = jnp.stack(cells)
        value = jnp.take_along_axis(row, lb[None, :], axis=0)[0]
        return row, jnp.where(la == i, value, out)

    return lax.fori_loop(1, ka.shape[0] + 1, body, (row0, lb.astype(jnp.float32)))[1]


_NUMPY_PAIRS = 1 << 14  # fewer pairs: numpy (no compilation); more: XLA in chunks
_CHUNK = 1 << 16


def _layers_pairs(a: Encoded, ia: np.ndarray, b: Encoded, ib: np.ndarray) -> np.ndarray:
    """The layer-sequence distance of each pair ``(a[ia[p]], b[ib[p]])``."""
    if ia.size <= _NUMPY_PAIRS:
        return _layers_numpy(
            a.kinds[ia], a.widths[ia], a.num_layers[ia], b.kinds[ib], b.widths[ib], b.num_layers[ib]
        )
    # Pad the layer axes to multiples of 8 and the pairs to whole chunks: few shapes compile.
    la_max = -(-a.kinds.shape[1] // 8) * 8
    lb_max = -(-b.kinds.shape[1] // 8) * 8

    def transposed(enc: Encoded, length: int):
        pad = ((0, 0), (0, length - enc.kinds.shape[1]))
        kinds = np.pad(enc.kinds, pad, constant_values=-1).T.copy()
        widths = np.pad(enc.widths, pad, constant_values=1.0).T.astype(np.float32).copy()
        return kinds, widths, enc.num_layers.astype(np.int32)

    ka, wa, na = transposed(a, la_max)
    kb, wb, nb = transposed(b, lb_max)
    out = np.empty(ia.size)
    for start in range(0, ia.size, _CHUNK):
        r, c = ia[start : start + _CHUNK], ib[start : start + _CHUNK]
        size = r.size
        r, c = np.pad(r, (0, _CHUNK - size)), np.pad(c, (0, _CHUNK - size))
        value = _layers_jax(ka[:, r], wa[:, r], na[r], kb[:, c], wb[:, c], nb[c])
        out[start : start + size] = np.asarray(value, np.float64)[:size]
    return out


def _skip_costs(fa, la, ka, fb, lb, kb) -> np.ndarray:
    """``[P, k, k]``: the skip distances between the ``k`` slots of each pair's two sets
    (``[P, k]`` starts, lengths and kinds; kind -1 is padding: 1 against a real connection, 0
    between two padding slots)."""
    fa, la, ka = fa[:, :, None], la[:, :, None], ka[:, :, None]
    fb, lb, kb = fb[:, None, :], lb[:, None, :], kb[:, None, :]
    den = np.maximum(fa, fb) + np.maximum(la, lb)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = np.where(den > 0, (np.abs(fa - fb) + np.abs(la - lb)) / den, 0.0)
    cost = np.where(ka == kb, same, 1.0)
    pad_a, pad_b = ka < 0, kb < 0
    cost = np.where(pad_a | pad_b, 1.0, cost)
    return np.where(pad_a & pad_b, 0.0, cost)


def _assignment_min(cost: np.ndarray) -> np.ndarray:
    """``[P]``: the minimum-cost perfect matching of each square ``[P, k, k]`` cost matrix, by
    the dynamic programme over subsets (row ``i`` takes a column outside the set ``S`` of
    columns the first ``i`` rows took: ``f[S | {j}] = min(f[S] + cost[i, j])``), vectorised
    over the pairs: ``k 2^k`` work per pair, exact like ``linear_sum_assignment``."""
    p, k = cost.shape[0], cost.shape[1]
    f = np.full((p, 1 << k), np.inf)
    f[:, 0] = 0.0
    masks = np.arange(1 << k)
    popcount = np.array([bin(m).count("1") for m in masks])
    for i in range(k):
        rows = masks[popcount == i]
        f_rows = f[:, rows]
        for j in range(k):
            free = (rows >> j) & 1 == 0
            target = rows[free] | (1 << j)  # distinct for distinct rows: an elementwise min
            f[:, target] = np.minimum(f[:, target], f_rows[:, free] + cost[:, i, j, None])
    return f[:, -1]


_MAX_SUBSET_DP = 4  # larger residual sets go to linear_sum_assignment, pair by pair
_SKIP_CHUNK = 1 << 16


def _skips_pairs(a: Encoded, ia: np.ndarray, b: Encoded, ib: np.ndarray) -> np.ndarray:
    """The skip-connection distance of each pair ``(a[ia[p]], b[ib[p]])``.

    1. A connection both sets hold is matched with its copy at cost 0 (exact: the skip
       distance is a metric, the Soergel distance ``sum |x - y| / sum max(x, y)`` of
       ``(from, length)`` within a kind and 1 across kinds, so exchanging any matching's
       pairs ``x-b, a-x`` for ``x-x, a-b`` never costs more); networks related by morphisms
       share most of their connections, so few remain.
    2. The rest, padded to ``k = max(count_a, count_b)`` slots, a real connection costing 1
       against a padding slot: the minimum over the perfect matchings of the ``k x k`` matrix
       is the optimum of :func:`skips_distance` (every real pair costs at most 1, so pairing
       two connections each with padding, cost 2, is never better than pairing them).
       ``k <= 4``: the subset programme over all pairs at once (:func:`_assignment_min`);
       larger: ``linear_sum_assignment``, pair by pair (a few microseconds each).
    """
    out = np.empty(ia.size)
    for start in range(0, ia.size, _SKIP_CHUNK):
        pa, pb = ia[start : start + _SKIP_CHUNK], ib[start : start + _SKIP_CHUNK]
        out[start : start + pa.size] = _skips_chunk(a, pa, b, pb)
    return out


def _skips_chunk(a: Encoded, pa, b: Encoded, pb) -> np.ndarray:
    fa, la, ka = a.skip_from[pa], a.skip_len[pa], a.skip_kinds[pa]
    fb, lb, kb = b.skip_from[pb], b.skip_len[pb], b.skip_kinds[pb]
    # the i-th copy of a connection is the i-th copy's match (padding never matches)
    same = a.skip_key[pa][:, :, None] == np.where(kb < 0, -2, b.skip_key[pb])[:, None, :]
    keep_a, keep_b = (ka >= 0) & ~same.any(2), (kb >= 0) & ~same.any(1)

    def left(keep, *arrays):  # the kept slots first, in order; the rest padding
        order = np.argsort(~keep, axis=1, kind="stable")
        kinds = np.where(np.take_along_axis(keep, order, 1), 0, -1)
        out = [np.take_along_axis(x, order, 1) for x in arrays]
        out[-1] = np.where(kinds < 0, -1, out[-1])
        return out

    fa, la, ka = left(keep_a, fa, la, ka)
    fb, lb, kb = left(keep_b, fb, lb, kb)
    ca, cb = keep_a.sum(1), keep_b.sum(1)
    k_pair = np.maximum(ca, cb)
    out = np.abs(ca - cb).astype(np.float64)  # right where one side has none left
    for k in range(1, int(k_pair.max(initial=0)) + 1):
        (sel,) = np.nonzero((k_pair == k) & (np.minimum(ca, cb) > 0))
        if sel.size == 0:
            continue
        args = []
        for x, fill in ((fa, 0), (la, 0), (ka, -1), (fb, 0), (lb, 0), (kb, -1)):
            x = np.pad(x[sel], ((0, 0), (0, max(0, k - x.shape[1]))), constant_values=fill)
            args.append(x[:, :k])
        cost = _skip_costs(*args)  # [P, k, k]
        if k <= _MAX_SUBSET_DP:
            for s0 in range(0, sel.size, max(1, (1 << 22) >> k)):
                part = slice(s0, s0 + max(1, (1 << 22) >> k))
                out[sel[part]] = _assignment_min(cost[part])
        else:  # scipy's assignment takes 2-4 us for such a matrix
            cols = np.empty((sel.size, k), np.int64)
            for q, c in enumerate(cost):
                cols[q] = linear_sum_assignment(c)[1]
            out[sel] = np.take_along_axis(cost, cols[:, :, None], 2)[..., 0].sum(1)
    return out


def _unique(enc: Encoded, fields) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)``: one representative of each distinct row of ``fields``."""
    key = np.concatenate(
        [getattr(enc, f).reshape(len(enc), -1).astype(np.float64) for f in fields], axis=1
    )
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def _part(fn, fields, a: Encoded, b: Encoded | None, cache: dict | None = None) -> np.ndarray:
    """``[len(a), len(b)]`` values of the pair function ``fn`` (layers or skips), computed
    once per pair of distinct rows (the upper triangle when ``b`` is None); ``cache`` keeps
    ``b``'s distinct rows between calls with the same ``b``."""
    first_a, inv_a = _unique(a, fields)
    ua = a.take(first_a)
    if b is not None and cache is not None:
        if fields not in cache:
            first_b, inv_b = _unique(b, fields)
            cache[fields] = (b.take(first_b), inv_b)
        ub, inv_b = cache[fields]
        ia, ib = (x.reshape(-1) for x in np.indices((len(ua), len(ub))))
        return fn(ua, ia, ub, ib).reshape(len(ua), len(ub))[np.ix_(inv_a, inv_b)]
    if b is None:
        ia, ib = np.triu_indices(len(ua), 1)
        out = np.zeros((len(ua), len(ua)))
        out[ia, ib] = fn(ua, ia, ua, ib)
        out[ib, ia] = out[ia, ib]
        return out[np.ix_(inv_a, inv_a)]
    first_b, inv_b = _unique(b, fields)
    ub = b.take(first_b)
    ia, ib = (x.reshape(-1) for x in np.indices((len(ua), len(ub))))
    return fn(ua, ia, ub, ib).reshape(len(ua), len(ub))[np.ix_(inv_a, inv_b)]


_LAYER_FIELDS = ("kinds", "widths", "num_layers")
_SKIP_FIELDS = ("skip_kinds", "skip_from", "skip_len", "skip_key", "num_skips")


def distance_matrix(
    xs, ys=None, kernel_lambda: float = KERNEL_LAMBDA, *, cache: dict | None = None
) -> np.ndarray:
    """``[len(xs), len(ys)]`` edit distances (``ys = xs`` when None: symmetric, zero
    diagonal); ``xs`` / ``ys`` are descriptors or :class:`Encoded` arrays. Vectorised over
    all pairs of distinct layer lists and of distinct skip-connection sets (see the module
    docstring). ``cache``: a dict kept by the caller between calls with the same ``ys``."""
    a = xs if isinstance(xs, Encoded) else encode(xs)
    b = None if ys is None else (ys if isinstance(ys, Encoded) else encode(ys))
    layers = _part(_layers_pairs, _LAYER_FIELDS, a, b, cache)
    skips = _part(_skips_pairs, _SKIP_FIELDS, a, b, cache)
    return layers + kernel_lambda * skips


# --------------------------------------------------------------------------------------------
# Bourgain's embedding and the GP.


def bourgain_anchors(n: int, key: jax.Array) -> list[np.ndarray]:
    """The anchor sets of ``n`` points: ``ceil(ln n)`` (at least 1) sets of ``2^i`` indices
    for each level ``i = 0 .. max(ceil(log2 n - 1), 0)``, drawn uniformly with replacement in
    one draw from ``key``."""
    if n < 1:
        raise ValueError("Bourgain's embedding needs at least one point")
    levels = max(int(math.ceil(math.log2(n) - 1)), 0) if n > 1 else 0
    reps = max(int(math.ceil(math.log(n))), 1)
    sizes = [2**i for i in range(levels + 1) for _ in range(reps)]
    flat = np.asarray(jax.random.randint(key, (sum(sizes),), 0, n))
    return np.split(flat, np.cumsum(sizes)[:-1])


def bourgain_embed(dist_to_train: np.ndarray, anchors: Sequence[np.ndarray]) -> np.ndarray:
    """``[m, C]``: each point's distance to each anchor set (the minimum over the set), from
    its distances ``[m, n]`` to the ``n`` training points."""
    dist_to_train = np.asarray(dist_to_train, np.float64)
    return np.stack([dist_to_train[:, s].min(axis=1) for s in anchors], axis=1)


def bourgain_kernel(e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """``exp(-|e1 - e2|^2 / C)`` of embedding vectors (numpy; the GP's kernel)."""
    sq = ((e1[:, None, :] - e2[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / e1.shape[1])


def _bucket(n: int, smallest: int = 8) -> int:
    """The padded size of ``n`` rows: the next power of two (at least ``smallest``)."""
    return max(smallest, 1 << max(int(n) - 1, 0).bit_length())


_FAR = 1e6  # a padding row's coordinates: its kernel with every real row underflows to 0


def _pad_rows(x: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """``x`` padded to ``[rows, columns]``: extra columns 0 (no distance contribution), extra
    rows at ``_FAR`` (uncorrelated with every real row)."""
    out = np.full((rows, columns), _FAR)
    out[:, x.shape[1] :] = 0.0
    out[: x.shape[0], : x.shape[1]] = x
    return out


@jax.jit
def _gp_fit(x, scale, noise):
    import tinygp

    return tinygp.GaussianProcess(tinygp.kernels.ExpSquared(scale=scale), x, diag=noise)


@jax.jit
def _gp_posterior(gp, y, x_test):
    return gp.predict(y, x_test, return_var=True)


class EditDistanceGP:
    """GP regression of validation accuracy on architectures with the Bourgain kernel.

    Args:
      descriptors: the trained architectures (each with ``layers`` and ``skips``).
      accuracies: their validation accuracies.
      key: draws the anchor sets.
      kernel_lambda: the weight of the skip-connection distance.
      noise: the variance added to the diagonal, in units of the standardised accuracies.
      dist: the descriptors' distance matrix when already computed.
    """

    def __init__(
        self,
        descriptors,
        accuracies,
        key: jax.Array,
        *,
        kernel_lambda: float = KERNEL_LAMBDA,
        noise: float = 1e-6,
        dist: np.ndarray | None = None,
    ):
        y = np.asarray(accuracies, np.float64).reshape(-1)
        if len(descriptors) != y.size or y.size == 0:
            raise ValueError(f"{len(descriptors)} architectures but {y.size} accuracies")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"non-finite accuracies: {y.tolist()}")
        self.encoded = descriptors if isinstance(descriptors, Encoded) else encode(descriptors)
        self.kernel_lambda, self.noise = float(kernel_lambda), float(noise)
        self._cache: dict = {}  # the training rows' distinct layer lists and skip sets
        self.dist = distance_matrix(self.encoded, None, kernel_lambda) if dist is None else dist
        self.anchors = bourgain_anchors(y.size, key)
        self.embedding = bourgain_embed(self.dist, self.anchors)
        self.y_mean = float(y.mean())
        self.y_scale = float(y.std()) if y.size > 1 and y.std() > 1e-12 else 1.0
        self.y = (y - self.y_mean) / self.y_scale
        # Padded to a power of two of rows and a multiple of 16 coordinates, so that a
        # search compiles the fit and the prediction once per size bucket, not per round:
        # padding rows are far from everything and have y = 0 (exactly no effect on the
        # posterior), padding coordinates are 0 everywhere.
        self._rows = _bucket(y.size)
        self._cols = -(-self.embedding.shape[1] // 16) * 16
        scale = math.sqrt(self.embedding.shape[1] / 2.0)
        with jax.enable_x64(True):
            f64 = jax.numpy.float64
            x = _pad_rows(self.embedding, self._rows, self._cols)
            self.gp = _gp_fit(jax.numpy.asarray(x, f64), f64(scale), f64(self.noise))
            y_pad = np.zeros(self._rows)
            y_pad[: y.size] = self.y
            self._y = jax.numpy.asarray(y_pad, f64)

    def embed(self, descriptors) -> np.ndarray:
        """The embedding vectors of other architectures (distances to the anchor sets)."""
        dist = distance_matrix(descriptors, self.encoded, self.kernel_lambda, cache=self._cache)
        return bourgain_embed(dist, self.anchors)

    def predict(self, descriptors=None, *, embedding=None) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of the accuracy at ``descriptors`` (or their ``embedding``)."""
        e = self.embed(descriptors) if embedding is None else np.asarray(embedding, np.float64)
        m = e.shape[0]
        x = np.zeros((_bucket(m), self._cols))  # padded test rows are dropped below
        x[:m, : e.shape[1]] = e
        with jax.enable_x64(True):
            mean, var = _gp_posterior(self.gp, self._y, jax.numpy.asarray(x, jax.numpy.float64))
        mean, var = np.asarray(mean)[:m], np.maximum(np.asarray(var)[:m], 0.0)
        return mean * self.y_scale + self.y_mean, np.sqrt(var) * self.y_scale


# --------------------------------------------------------------------------------------------
# The strategies: what a round proposes, from the networks trained so far.


@dataclasses.dataclass(frozen=True)
class Trained:
    """A trained network a strategy may build on: its id in the history, its graph and its
    validation accuracy."""

    id: int
    graph: Any
    accuracy: float


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A child to train: ``graph``, reached from the trained network ``parent`` by ``edits``
    (in order; the child inherits the parent's trained weights through them), or trained
    from scratch (``parent`` None, no edits). ``info`` holds what the strategy knew
    (for BO: the acquisition value and the GP's mean and standard deviation)."""

    parent: int | None
    edits: tuple
    graph: Any
    info: dict = dataclasses.field(default_factory=dict, compare=False)


def _rng(key: jax.Array) -> np.random.Generator:
    """A numpy generator seeded by one draw from ``key`` (for the host-side search loops)."""
    return np.random.default_rng(np.asarray(jax.random.bits(key, (4,)), np.uint64).tolist())


def _number(lo: float, hi: float | None = None, *, strict: bool = True, integer=False):
    def ok(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        if integer and not isinstance(v, int):
            return False
        if not math.isfinite(v) or (v <= lo if strict else v < lo):
            return False
        return hi is None or v < hi

    kind = "an integer" if integer else "a finite number"
    rng = f"{'>' if strict else '>='} {lo}" + (f" and < {hi}" if hi is not None else "")
    return ok, f"{kind} {rng}"


class MorphismStrategy:
    """The shape of a ``"morphism"`` strategy (see the module docstring).

    A subclass lists its options in ``OPTIONS`` (name -> ``(default, check, what)``; a config
    section ``config.<strategy name>`` sets them) and implements :meth:`propose`.
    ``inherits`` says whether its children start from a parent's trained weights (the host
    loop then keeps every trained network's variables).
    """

    KIND: ClassVar[str] = "morphism"
    OPTIONS: ClassVar[dict[str, tuple]] = {}
    inherits: ClassVar[bool] = True

    def __init__(self, **options):
        problems = self.option_problems(options)
        if problems:
            raise ValueError("; ".join(f"{k}: {m}" for k, m in problems))
        for name, (default, _, _) in self.OPTIONS.items():
            setattr(self, name, options.get(name, default))

    @classmethod
    def option_problems(cls, options: dict) -> list[tuple[str, str]]:
        """``[(option, what is wrong)]`` for a config section's options."""
        out = []
        for name in sorted(set(options) - set(cls.OPTIONS)):
            out.append((name, f"unknown option; {cls.__name__} takes {sorted(cls.OPTIONS)}"))
        for name, (_, check, what) in cls.OPTIONS.items():
            if name in options and not check(options[name]):
                out.append((name, f"{options[name]!r} is not {what}"))
        return out

    @classmethod
    def from_config(cls, section=None):
        """The strategy with the options of a config section (a mapping or None)."""
        return cls(**(dict(section.items()) if section is not None else {}))

    def options(self) -> dict:
        return {name: getattr(self, name) for name in self.OPTIONS}

    def propose(
        self, space, trained: Sequence[Trained], num: int, key: jax.Array, *, exclude=()
    ) -> list[Proposal]:
        """Up to ``num`` children whose graphs are neither trained nor in ``exclude`` (texts),
        drawn with ``key``; fewer (or none) when the strategy finds no new graph."""
        raise NotImplementedError


@STRATEGIES.register("morphism_bo", kind="morphism")
class MorphismBO(MorphismStrategy):
    """Auto-Keras's Bayesian optimisation over morphisms (module docstring).

    Options (``config.morphism_bo``): ``kernel_lambda`` (1.0), ``beta`` (2.576), ``t_min``
    (1e-4), ``decay`` (0.9), ``n_neighbours`` (8), ``noise`` (1e-6).
    """

    OPTIONS = {
        "kernel_lambda": (KERNEL_LAMBDA, *_number(0.0, strict=False)),
        "beta": (BETA, *_number(0.0, strict=False)),
        "t_min": (T_MIN, *_number(0.0, 1.0)),
        "decay": (DECAY, *_number(0.0, 1.0)),
        "n_neighbours": (N_NEIGHBOURS, *_number(0, integer=True)),
        "noise": (1e-6, *_number(0.0)),
    }

    def fit(self, trained: Sequence[Trained], key: jax.Array) -> EditDistanceGP:
        """The GP on the trained networks' descriptors and accuracies."""
        return EditDistanceGP(
            [t.graph.descriptor() for t in trained],
            [t.accuracy for t in trained],
            key,
            kernel_lambda=self.kernel_lambda,
            noise=self.noise,
        )

    def propose(self, space, trained, num, key, *, exclude=()):
        if not trained:
            raise ValueError("Bayesian optimisation over morphisms needs a trained network")
        key_gp, key_search = jax.random.split(key)
        seen = {t.graph.to_text() for t in trained} | set(exclude)
        gp = self.fit(trained, key_gp)
        out = []
        for q in range(num):
            best = acquisition_search(
                space,
                gp,
                trained,
                jax.random.fold_in(key_search, q),
                seen=seen,
                beta=self.beta,
                t_min=self.t_min,
                decay=self.decay,
                n_neighbours=self.n_neighbours,
            )
            if best is None:
                break
            out.append(best)
            seen.add(best.graph.to_text())
            if q + 1 < num:  # kriging believer: the choice, valued at its predicted mean
                believed = [*trained, Trained(-1, best.graph, best.info["mean"])]
                gp = self.fit(believed, key_gp)
        return out


def acquisition_search(
    space,
    gp: EditDistanceGP,
    trained: Sequence[Trained],
    key: jax.Array,
    *,
    seen=(),
    beta: float = BETA,
    t_min: float = T_MIN,
    decay: float = DECAY,
    n_neighbours: int = N_NEIGHBOURS,
    trace: list | None = None,
) -> Proposal | None:
    """The tree-structured search with simulated annealing of Auto-Keras 0.3.7
    (``BayesianOptimizer.generate``; module docstring) for the child of highest UCB.

    Returns the best candidate found (its ``info``: ``acq``, ``mean``, ``std``, ``pops``
    (queue elements popped), ``expanded``, ``scored`` (candidates valued)), or None when
    every candidate reached was trained or in ``seen``. ``trace``, a list, receives every
    candidate valued as a :class:`Proposal` (``info["acq"]`` its UCB).
    """
    rng = _rng(key)
    seen = set(seen)
    queue, counter = [], itertools.count()
    for t in sorted(trained, key=lambda t: (-t.accuracy, t.id)):
        heapq.heappush(queue, (-t.accuracy, next(counter), t.id, (), t.graph))
    temperature, best_acq, best = 1.0, -math.inf, None
    pops = expanded = scored = 0
    while queue and temperature > t_min:
        neg_value, _, parent, edits, graph = heapq.heappop(queue)
        pops += 1
        exponent = 1.0 if best_acq == -math.inf else min((-neg_value - best_acq) / temperature, 1.0)
        if math.exp(exponent) >= rng.uniform():
            expanded += 1
            children = []
            for edit, child in random_children(space, graph, rng, n_neighbours):
                text = child.to_text()
                if text not in seen:
                    seen.add(text)
                    children.append((edits + (edit,), child))
            if children:
                mean, std = gp.predict([c.descriptor() for _, c in children])
                acq = mean + beta * std
                scored += len(children)
                for (child_edits, child), a, m, s in zip(children, acq, mean, std):
                    heapq.heappush(queue, (-float(a), next(counter), parent, child_edits, child))
                    if trace is not None:
                        trace.append(Proposal(parent, child_edits, child, {"acq": float(a)}))
                    if a > best_acq:
                        best_acq = float(a)
                        best = (parent, child_edits, child, float(m), float(s))
        temperature *= decay
    if best is None:
        return None
    parent, edits, child, m, s = best
    info = dict(acq=best_acq, mean=m, std=s, pops=pops, expanded=expanded, scored=scored)
    return Proposal(parent, edits, child, info)


def random_children(space, graph, rng: np.random.Generator, n: int) -> list[tuple]:
    """Up to ``n`` ``(edit, child)`` of ``graph``, the edits drawn uniformly without
    replacement among :func:`jnas.spaces.morphism.possible_edits` (Auto-Keras 0.3.7's
    ``transform`` draws ``N_NEIGHBOURS`` random edits). Drawn by rejection from
    ``candidate_edits`` (an edit whose child breaks a limit is skipped), which draws the same
    distribution without building every child."""
    from jnas.spaces import morphism
    from jnas.spaces.graph import GraphError, GraphLimitError

    candidates = morphism.candidate_edits(space, graph)
    out = []
    for i in rng.permutation(len(candidates)):
        if len(out) == n:
            break
        try:
            out.append((candidates[i], morphism.apply_edit(space, graph, candidates[i])))
        except GraphLimitError:
            continue
        except GraphError as e:  # an edit the space offers but cannot apply: skipped, said
            warnings.warn(
                f"the graph space offered {candidates[i]} for {graph.to_text()!r} but cannot "
                f"apply it ({e}); skipped",
                RuntimeWarning,
                stacklevel=2,
            )
    return out


@STRATEGIES.register("morphism_walk", kind="morphism")
class MorphismWalk(MorphismStrategy):
    """The random morphism walk (a baseline without the GP): a trained parent drawn
    uniformly, then ``num_edits`` (1) edits each drawn uniformly among the possible ones; a
    child already trained is drawn again (at most ``tries`` (50) times)."""

    OPTIONS = {
        "num_edits": (1, *_number(0, integer=True)),
        "tries": (50, *_number(0, integer=True)),
    }

    def propose(self, space, trained, num, key, *, exclude=()):
        if not trained:
            raise ValueError("a morphism walk needs a trained network")
        rng = _rng(key)
        seen = {t.graph.to_text() for t in trained} | set(exclude)
        out = []
        for _ in range(num):
            for _ in range(self.tries):
                parent = trained[int(rng.integers(len(trained)))]
                graph, edits = parent.graph, ()
                for _ in range(self.num_edits):
                    drawn = random_children(space, graph, rng, 1)
                    if not drawn:
                        break
                    edits, graph = edits + (drawn[0][0],), drawn[0][1]
                text = graph.to_text()
                if edits and text not in seen:
                    seen.add(text)
                    out.append(Proposal(parent.id, edits, graph))
                    break
        return out


@STRATEGIES.register("graph_random", kind="morphism")
class GraphRandom(MorphismStrategy):
    """Random search from scratch over the same graph space (a baseline): each child is
    ``space.random_graph(key)``, trained from a fresh initialisation; a graph already
    trained is drawn again (at most ``tries`` (50) times)."""

    OPTIONS = {"tries": (50, *_number(0, integer=True))}
    inherits = False

    def propose(self, space, trained, num, key, *, exclude=()):
        seen = {t.graph.to_text() for t in trained} | set(exclude)
        out = []
        for q in range(num):
            for attempt in range(self.tries):
                graph = space.random_graph(jax.random.fold_in(jax.random.fold_in(key, q), attempt))
                text = graph.to_text()
                if text not in seen:
                    seen.add(text)
                    out.append(Proposal(None, (), graph))
                    break
        return out


def morphism_strategy(name: str):
    """The class of a registered ``"morphism"`` strategy (ValueError for another kind)."""
    from jnas.strategies.base import kind_of

    kind = kind_of(name)
    if kind != "morphism":
        raise ValueError(f"strategy {name!r} is a {kind} strategy, not a morphism one")
    return STRATEGIES.get(name)
