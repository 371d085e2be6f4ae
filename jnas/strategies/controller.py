"""The NAS-RL controller: an LSTM that emits a space's decisions one by one (Zoph & Le, 2017).

At each categorical decision t a Flax LSTM cell (one layer, 35 units by default, as in the paper)
takes the embedding of the previous action (a learned start vector for the first), and a softmax
classifier of the decision's own turns the hidden state h_t into P(a_t | a_<t). The chosen action
is fed back as the next input. At the anchor point of layer i the LSTM takes one more step, giving
h_i, and each earlier layer j < i is connected with

    P(j feeds i) = sigmoid(v^T tanh(W_prev h_j + W_curr h_i))           (Zoph & Le, Sec. 3.3)

where h_j is the hidden state at layer j's anchor. As in ENAS's macro controller, the input after
an anchor is sum_j a_j h_j / (1 + sum_j a_j) over the chosen layers (the start vector if none
can be chosen).

Every position's distribution is returned as one row of padded logits `[length, K]`: a
categorical's logits padded with -inf, an anchor bit as [0, l, -inf, ...] (whose softmax is
[1 - sigmoid(l), sigmoid(l)]). So log P(a) = sum_t log_softmax(logits_t)[a_t] for both kinds.

The decisions are one `lax.scan` over steps, with per-decision parameters stacked on a leading
axis: compile time does not grow with the number of decisions (an unrolled 15-layer NAS-RL
controller took minutes to compile its gradient on CPU). All functions are pure, jit-compiled,
and take an explicit PRNG key; the spec is static.

ENAS's logit transforms (Pham et al. 2018; melodyguan/enas, src/cifar10/general_controller.py
and micro_controller.py) are an option, :class:`LogitTransform`, given to `sample` / `log_prob` /
... as the static `transform`: each logit is divided by a temperature, then squashed to
c * tanh(logit) (c = `tanh_constant`, divided by `op_tanh_reduce` at the decisions it marks as
ops), and an anchor row is [-l, l] instead of [0, l] where asked (ENAS's `[-query, query]`).
Without a transform (the default) the programs are the NAS-RL ones above, unchanged.
`skip_penalty` is ENAS's macro penalty on the anchors' skip probabilities.

Example:
  >>> params = init(jax.random.key(0), nb201.SPEC)
  >>> actions, logp, ent = sample(params, jax.random.key(1), nb201.SPEC)
  >>> bool(jnp.allclose(log_prob(params, actions, nb201.SPEC), logp))
  True
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jnas.spaces.discrete import Anchor, Categorical, DecisionSpec

DEFAULT_HIDDEN_SIZE = 35
INIT_SCALE = 0.08  # Zoph & Le: weights initialized uniformly in [-0.08, 0.08]


class _Steps(NamedTuple):
    """Static per-step tables of a spec (one step per categorical decision or anchor)."""

    num_cats: int  # C
    num_anchors: int  # A
    width: int  # K: logits per row, max(2, max num_choices)
    rows: int  # S: rows a step writes, max(1, max num_sources)
    is_anchor: np.ndarray  # [T] bool
    cat_index: np.ndarray  # [T] index among categoricals (0 for an anchor)
    anchor_index: np.ndarray  # [T] index among anchors (0 for a categorical)
    num_valid: np.ndarray  # [T] choices of a categorical / sources of an anchor
    row_valid: np.ndarray  # [T, S] which of a step's S output rows are real positions
    step_of: np.ndarray  # [length] the step that emits each position
    row_of: np.ndarray  # [length] and its row within that step


@dataclasses.dataclass(frozen=True)
class LogitTransform:
    """ENAS's transforms of the controller's logits (hashable: a static jit argument).

    Every logit l of a position (a categorical's, or an anchor bit's) becomes, in this order
    (melodyguan/enas, src/cifar10/micro_controller.py ``_build_sampler``):

        l <- l / temperature                     (when ``temperature`` is set)
        l <- c * tanh(l)                         (when ``tanh_constant`` is set)

    with ``c = tanh_constant / op_tanh_reduce`` at the decisions ``op_decisions`` marks
    (ENAS's micro op choices) and ``c = tanh_constant`` elsewhere. ``symmetric_anchors``
    makes an anchor bit's row ``[-l, l]`` (ENAS's macro controller: ``concat([-query,
    query])`` before the transforms, so P(bit) = sigmoid(2 l)) instead of NAS-RL's
    ``[0, l]`` (P(bit) = sigmoid(l)).

    Attributes:
      temperature: > 0, or None (no division).
      tanh_constant: > 0, or None (no tanh).
      op_tanh_reduce: > 0; divides ``tanh_constant`` at op decisions.
      op_decisions: one bool per decision of the spec (empty: no op decisions).
      symmetric_anchors: anchor rows ``[-l, l]``.

    Raises:
      ValueError: a value out of range (named).
    """

    temperature: float | None = None
    tanh_constant: float | None = None
    op_tanh_reduce: float = 1.0
    op_decisions: tuple[bool, ...] = ()
    symmetric_anchors: bool = False

    def __post_init__(self):
        for name in ("temperature", "tanh_constant"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(
                    f"the controller's {name} must be None or a finite number > 0, got {v!r}"
                )
        r = self.op_tanh_reduce
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise ValueError(
                f"the controller's op_tanh_reduce must be a finite number > 0, got {r!r}"
            )
        object.__setattr__(self, "op_decisions", tuple(bool(b) for b in self.op_decisions))

    def step_constants(self, spec: DecisionSpec) -> np.ndarray:
        """float32 ``[num decisions]``: the tanh constant of each decision (0: no tanh)."""
        n = len(spec.decisions)
        if self.op_decisions and len(self.op_decisions) != n:
            raise ValueError(
                f"op_decisions has {len(self.op_decisions)} entries for a spec of {n} decisions"
            )
        if self.tanh_constant is None:
            return np.zeros(n, np.float32)
        ops = np.asarray(self.op_decisions or (False,) * n)
        c = float(self.tanh_constant)
        return np.where(ops, c / float(self.op_tanh_reduce), c).astype(np.float32)

    def apply(self, logits: jax.Array, c: jax.Array) -> jax.Array:
        """``logits`` transformed with this step's tanh constant ``c`` (traced)."""
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = c * jnp.tanh(logits)
        return logits


@functools.lru_cache(maxsize=64)
def _steps(spec: DecisionSpec) -> _Steps:
    per_step = []  # (is_anchor, cat_index, anchor_index, num_valid)
    cats = anchors = 0
    for d in spec.decisions:
        if isinstance(d, Categorical):
            per_step.append((False, cats, 0, d.num_choices))
            cats += 1
            continue
        assert isinstance(d, Anchor)
        if d.num_sources > anchors:
            raise ValueError(
                f"anchor {d.name!r} has {d.num_sources} sources but only {anchors} "
                "anchors come before it"
            )
        per_step.append((True, 0, anchors, d.num_sources))
        anchors += 1
    table = np.asarray(per_step, np.int32).reshape(-1, 4)
    is_anchor, num_valid = table[:, 0].astype(bool), table[:, 3]
    s = max([1, *(n for n, a in zip(num_valid, is_anchor, strict=True) if a)])
    row_valid = np.where(is_anchor[:, None], np.arange(s) < num_valid[:, None], np.arange(s) == 0)
    step_of, row_of = np.nonzero(row_valid)  # row-major: the positions in order
    return _Steps(
        num_cats=cats,
        num_anchors=anchors,
        width=max([2, *spec.num_choices]),
        rows=s,
        is_anchor=is_anchor,
        cat_index=table[:, 1],
        anchor_index=table[:, 2],
        num_valid=num_valid,
        row_valid=row_valid,
        step_of=step_of.astype(np.int32),
        row_of=row_of.astype(np.int32),
    )


def _shapes(spec: DecisionSpec, hidden_size: int) -> dict:
    """The parameter tree's shapes (`jax.ShapeDtypeStruct` leaves)."""
    st, h = _steps(spec), hidden_size
    cell = nn.OptimizedLSTMCell(h)
    carry = (jnp.zeros((1, h)), jnp.zeros((1, h)))
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    shapes = {
        "cell": jax.eval_shape(lambda: cell.init(jax.random.key(0), carry, carry[0])["params"]),
        "start": f32(1, h),
    }
    if st.num_cats:
        c, k = st.num_cats, st.width
        shapes.update(embed=f32(c, k, h), head_kernel=f32(c, h, k), head_bias=f32(c, k))
    if st.num_anchors:
        shapes.update(w_prev=f32(h, h), w_curr=f32(h, h), v=f32(h))
    return shapes


def init(key: jax.Array, spec: DecisionSpec, hidden_size: int = DEFAULT_HIDDEN_SIZE) -> dict:
    """Initial controller parameters.

    The tree holds `cell` (the `nn.OptimizedLSTMCell`'s parameters), `start` (the first input),
    per-categorical-decision `embed` `[C, K, H]`, `head_kernel` `[C, H, K]` and `head_bias`
    `[C, K]` (decision c's softmax classifier is `h @ head_kernel[c] + head_bias[c]`, its
    first num_choices entries), and for anchors `w_prev`, `w_curr` `[H, H]` and `v` `[H]`.
    Every entry, biases included, is drawn uniformly in [-0.08, 0.08] as in Zoph & Le, with one
    `uniform` call split into the leaves (cheap to compile under `vmap` over seeds).

    Args:
      key: a PRNG key.
      spec: the space.
      hidden_size: LSTM units.

    Returns:
      The parameter pytree; pass it to `sample` / `log_prob` with the same spec.
    """
    leaves, treedef = jax.tree.flatten(_shapes(spec, hidden_size))
    sizes = [math.prod(leaf.shape) for leaf in leaves]
    flat = jax.random.uniform(key, (sum(sizes),), jnp.float32, -INIT_SCALE, INIT_SCALE)
    parts = jnp.split(flat, np.cumsum(sizes)[:-1].tolist())
    return treedef.unflatten([p.reshape(leaf.shape) for p, leaf in zip(parts, leaves, strict=True)])


def _run(params: dict, spec: DecisionSpec, key=None, actions=None, transform=None):
    """Samples (given `key`) or scores (given `actions`) one architecture; `transform`: a
    :class:`LogitTransform` or None.

    Returns:
      `(actions, logits)`: int32 `[length]` and float32 `[length, K]` padded logits of the
      distribution each action was drawn from.
    """
    st = _steps(spec)
    h = params["start"].shape[-1]
    s, k = st.rows, st.width
    cell = nn.OptimizedLSTMCell(h)
    cols = jnp.arange(k)
    filler = jnp.full((s, k), -jnp.inf).at[:, :2].set(0.0)  # harmless rows for unused slots
    if actions is None:
        given = jnp.zeros((len(st.is_anchor), s), jnp.int32)  # unused
    else:  # each step's actions, laid out like its output rows (a static gather)
        flat = jnp.asarray(actions, jnp.int32)
        given = jnp.zeros((len(st.is_anchor), s), jnp.int32).at[st.step_of, st.row_of].set(flat)

    def step(carry, xs):
        lstm, x, anchor_h, anchor_proj = carry
        t, is_anchor, ci, ai, n, valid, a_given, *c = xs
        c = c[0] if c else None
        lstm, hidden = cell.apply({"params": params["cell"]}, lstm, x)
        hid = hidden[0]
        rows = filler
        if st.num_cats:
            z = hid @ params["head_kernel"][ci] + params["head_bias"][ci]
            if transform is not None:
                z = transform.apply(z, c)
            rows = rows.at[0].set(jnp.where(cols < n, z, -jnp.inf))
        if st.num_anchors:
            scores = jnp.tanh(anchor_proj[:s] + hid @ params["w_curr"]) @ params["v"]  # [s]
            if transform is None:
                anchor_rows = filler.at[:, 1].set(scores)
            else:
                scores = transform.apply(scores, c)
                anchor_rows = filler.at[:, 1].set(scores)
                if transform.symmetric_anchors:
                    anchor_rows = anchor_rows.at[:, 0].set(-scores)
            rows = jnp.where(is_anchor, anchor_rows, rows)
        if actions is None:
            a = jax.random.categorical(jax.random.fold_in(key, t), rows).astype(jnp.int32)
        else:
            a = a_given
        x_next = params["start"]
        if st.num_cats:
            x_next = params["embed"][ci, a[0]][None]
        if st.num_anchors:
            bits = jnp.where(valid, a, 0).astype(hid.dtype)
            mean_h = (bits @ anchor_h[:s])[None] / (1.0 + jnp.sum(bits))
            x_anchor = jnp.where(n > 0, mean_h, params["start"])
            x_next = jnp.where(is_anchor, x_anchor, x_next)
            keep = lambda buf, new: buf.at[ai].set(jnp.where(is_anchor, new, buf[ai]))
            anchor_h = keep(anchor_h, hid)
            anchor_proj = keep(anchor_proj, hid @ params["w_prev"])
        return (lstm, x_next, anchor_h, anchor_proj), (a, rows)

    buffers = jnp.zeros((max(st.num_anchors, s), h))
    carry = ((jnp.zeros((1, h)), jnp.zeros((1, h))), params["start"], buffers, buffers)
    xs = (
        jnp.arange(len(st.is_anchor)),
        jnp.asarray(st.is_anchor),
        jnp.asarray(st.cat_index),
        jnp.asarray(st.anchor_index),
        jnp.asarray(st.num_valid),
        jnp.asarray(st.row_valid),
        given,
    )
    if transform is not None:  # without one, the NAS-RL program exactly as before
        xs = (*xs, jnp.asarray(transform.step_constants(spec)))
    _, (step_actions, step_rows) = jax.lax.scan(step, carry, xs)
    return step_actions[st.step_of, st.row_of], step_rows[st.step_of, st.row_of]


def _log_prob_and_entropy(actions: jax.Array, logits: jax.Array):
    """sum_t log_softmax(logits_t)[a_t] and sum_t H(softmax(logits_t))."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    chosen = jnp.take_along_axis(logp, actions[:, None], axis=-1)[:, 0]
    p = jnp.exp(logp)
    # Padded entries have p = 0 and logp = -inf: mask logp itself, not p * logp, or the
    # gradient is 0 * inf = NaN there (and through any entropy weight, 0 included).
    ent = -jnp.sum(p * jnp.where(p > 0, logp, 0.0))
    return jnp.sum(chosen), ent


@functools.partial(jax.jit, static_argnames=("spec", "transform"))
def sample(params: dict, key: jax.Array, spec: DecisionSpec, transform=None):
    """Samples one architecture a ~ P(. ; theta).

    Args:
      params: controller parameters from `init`.
      key: a PRNG key.
      spec: the space (static).
      transform: a :class:`LogitTransform` (static) or None.

    Returns:
      `(actions, log_prob, entropy)`: int32 `[length]`; log P(a) = sum_t log P(a_t | a_<t);
      and the sum over positions of the entropy of each conditional distribution.
    """
    actions, logits = _run(params, spec, key=key, transform=transform)
    return (actions, *_log_prob_and_entropy(actions, logits))


@functools.partial(jax.jit, static_argnames=("spec", "transform"))
def log_prob_and_entropy(params: dict, actions: jax.Array, spec: DecisionSpec, transform=None):
    """log P(a) = sum_t log P(a_t | a_<t) and the summed per-step entropy, for given actions."""
    actions = jnp.asarray(actions, jnp.int32)
    _, logits = _run(params, spec, actions=actions, transform=transform)
    return _log_prob_and_entropy(actions, logits)


@functools.partial(jax.jit, static_argnames=("spec", "transform"))
def log_prob(params: dict, actions: jax.Array, spec: DecisionSpec, transform=None) -> jax.Array:
    """log P(a ; theta) = sum_t log P(a_t | a_<t ; theta) of a given architecture."""
    return log_prob_and_entropy(params, actions, spec, transform=transform)[0]


@functools.partial(jax.jit, static_argnames=("spec", "transform"))
def logits(params: dict, actions: jax.Array, spec: DecisionSpec, transform=None) -> jax.Array:
    """The padded logits `[length, K]` each position's action is drawn from, given `actions`."""
    return _run(params, spec, actions=jnp.asarray(actions, jnp.int32), transform=transform)[1]


@functools.partial(jax.jit, static_argnames=("spec", "transform"))
def score(params: dict, actions: jax.Array, spec: DecisionSpec, transform=None):
    """``(log P(a), summed entropy, padded logits [length, K])`` of given actions, in one pass."""
    actions = jnp.asarray(actions, jnp.int32)
    _, rows = _run(params, spec, actions=actions, transform=transform)
    return (*_log_prob_and_entropy(actions, rows), rows)


def anchor_positions(spec: DecisionSpec) -> np.ndarray:
    """int32 ``[length]``: the index among the anchors with sources of the anchor each
    position's bit belongs to, -1 for a categorical's position."""
    out, k = [], 0
    for d in spec.decisions:
        if isinstance(d, Anchor):
            out += [k] * d.num_sources
            k += d.num_sources > 0
        else:
            out.append(-1)
    return np.asarray(out, np.int32)


def skip_penalty(rows: jax.Array, spec: DecisionSpec, skip_target: float) -> jax.Array:
    """ENAS's macro skip penalty of one architecture's logit rows (from `score`/`logits`).

    With p = sigmoid(row[1]) per anchor bit (ENAS: ``sigmoid`` of the transformed
    ``[-query, query]``, whose second entry is row[1] here), the penalty is the mean over the
    anchors with sources of sum_bits KL(Bern(p) || Bern(skip_target)), as
    ``general_controller.py`` (``kl = skip_prob * log(skip_prob / skip_targets)`` summed
    over both columns, then ``reduce_mean`` over layers). 0 for a spec without anchor bits.
    """
    pos = anchor_positions(spec)
    bits = np.nonzero(pos >= 0)[0]
    if not len(bits):
        return jnp.zeros((), rows.dtype)
    x = rows[bits, 1]
    p, t = jax.nn.sigmoid(x), float(skip_target)
    log_p, log_q = jax.nn.log_sigmoid(x), jax.nn.log_sigmoid(-x)  # log p, log(1 - p): finite
    kl = p * (log_p - math.log(t)) + (1.0 - p) * (log_q - math.log(1.0 - t))
    per_anchor = jax.ops.segment_sum(kl, jnp.asarray(pos[bits]), num_segments=int(pos.max()) + 1)
    return jnp.mean(per_anchor)


def skip_rate(actions: jax.Array, spec: DecisionSpec) -> jax.Array:
    """The fraction of anchor bits set (ENAS's ``skip_rate``; 0 without anchor bits)."""
    bits = np.nonzero(anchor_positions(spec) >= 0)[0]
    if not len(bits):
        return jnp.zeros((), jnp.float32)
    return jnp.mean(jnp.asarray(actions)[..., bits].astype(jnp.float32), axis=-1)
