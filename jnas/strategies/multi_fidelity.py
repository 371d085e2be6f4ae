"""Multi-fidelity strategies: successive halving, Hyperband and BOHB, as pure ask / tell.

Each candidate is judged at a *budget* (epochs, steps, a data fraction, a width: the
strategy's ``budget_resource``) from a ladder ``budgets`` (strictly increasing; the last is
the full fidelity). After an ``ask``, :meth:`fidelities` gives each member's index into the
ladder (the API of :mod:`jnas.strategies.base`); ``tell`` takes the rewards measured there.
Every evaluation is from scratch at its budget, as in HpBandSter.

**The ladder.** ``min_budget``, ``max_budget`` and ``eta`` give HpBandSter's geometric ladder
``max_budget * eta**-k``, k = K-1, ..., 0, with K = floor(log_eta(max/min)) + 1 (R = 81,
min 1, eta 3: 1, 3, 9, 27, 81). A table with fixed fidelities (NAS-Bench-201: 12 and 200
epochs) names its ladder instead: ``budgets=(12, 200)``; eta then only sets how many
candidates each rung keeps.

**Hyperband** (Li et al., JMLR 2018, Algorithm 1; s_max = K - 1): brackets s = s_max, ..., 0
in turn, each a run of successive halving with n = ceil((s_max+1)/(s+1) eta^s) new candidates
at rung K-1-s; rung i holds n_i = floor(n eta^-i) candidates, the best n_i of rung i-1 by
reward, judged at the next budget. **Successive halving** (Jamieson & Talwalkar 2016, as Li
et al.'s inner loop) repeats Hyperband's most aggressive bracket s = s_max (n = eta^s_max, or
``num_configs``). **BOHB** (Falkner et al., ICML 2018) runs Hyperband's brackets and draws
each bracket's new candidates from a TPE-style model (:class:`BOHB`).

The schedule is static (computed on the host from the ladder, eta and the population size),
so a whole search stays one ``lax.scan``. The state keeps two rungs: the one being told
(``cur_*``) and the previous one, sorted by reward (``prev_*``), whose best are asked next.
A rung never shares a round with the next, whose members depend on its rewards, so with a
population of m > 1 every rung fills whole rounds: a bracket starts m times the paper's n
(as m copies of the bracket sharing their rungs) and rung i keeps the best floor(m n eta^-i),
rounded down to a multiple of m (at least m). With m = 1 the sizes are the paper's.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jnas.spaces import discrete
from jnas.spaces.discrete import DecisionSpec
from jnas.strategies.base import (
    BUDGET_RESOURCES,
    STRATEGIES,
    DiscreteStrategy,
    FidelityError,
    NoParams,
    keep_if_finite,
    member_keys,
    to_fidelity,
)

__all__ = [
    "BOHB",
    "BOHBParams",
    "BracketState",
    "Hyperband",
    "SuccessiveHalving",
    "budget_ladder",
    "hyperband_brackets",
    "to_fidelity",
]


# The score of an empty slot: the most negative finite float32 (a state the host loops may
# checkpoint holds no infinity; any reward sorts above it).
EMPTY = float(np.finfo(np.float32).max)
# The encodings of a categorical value on which BOHB computes its bandwidths (BOHB.codes).
CODES = ("index", "unit")


def budget_ladder(min_budget=None, max_budget=None, eta=3.0, budgets=None) -> tuple[float, ...]:
    """The budget ladder from ``min_budget``/``max_budget``/``eta`` or an explicit ``budgets``.

    Raises:
      FidelityError: eta <= 1, a budget <= 0, min above max, a ladder not strictly increasing,
        ends that disagree with min/max, or neither form given.
    """
    eta = float(eta)
    if not eta > 1.0:
        raise FidelityError(f"eta must be > 1 (the rate at which rungs shrink), got {eta}")
    for name, v in (("min_budget", min_budget), ("max_budget", max_budget)):
        if v is not None and not float(v) > 0:
            raise FidelityError(f"{name} must be > 0, got {v}")
    if min_budget is not None and max_budget is not None and float(min_budget) > float(max_budget):
        raise FidelityError(
            f"min_budget {min_budget} is above max_budget {max_budget}: the ladder runs from "
            "the cheapest budget up to the full fidelity"
        )
    if budgets is not None:
        ladder = tuple(float(b) for b in budgets)
        if not ladder or any(not b > 0 for b in ladder):
            raise FidelityError(f"budgets must be positive numbers, got {tuple(budgets)}")
        if any(b >= c for b, c in zip(ladder, ladder[1:], strict=False)):
            raise FidelityError(f"budgets must be strictly increasing, got {ladder}")
        ends = (("min_budget", min_budget, ladder[0]), ("max_budget", max_budget, ladder[-1]))
        for name, v, end in ends:
            if v is not None and float(v) != end:
                raise FidelityError(f"{name} {v} disagrees with budgets {ladder}")
        return ladder
    if min_budget is None or max_budget is None:
        raise FidelityError("give min_budget and max_budget, or an explicit ladder `budgets`")
    lo, hi = float(min_budget), float(max_budget)
    k = int(math.floor(math.log(hi / lo) / math.log(eta) + 1e-9)) + 1
    return tuple(hi * eta ** -(k - 1 - i) for i in range(k))


def _floor_div(n: int, eta: float, i: int) -> int:
    return max(1, int(math.floor(n / eta**i + 1e-9)))


def hyperband_brackets(num_levels: int, eta: float) -> list[list[tuple[int, int]]]:
    """Li et al.'s brackets over a ladder of ``num_levels`` budgets, most aggressive first.

    Returns:
      For s = s_max, ..., 0: the rungs ``[(n_i, level_i), ...]``, n_i candidates judged at
      ladder index level_i (n_0 = ceil((s_max+1)/(s+1) eta^s), n_i = floor(n_0 eta^-i)).
    """
    s_max = num_levels - 1
    out = []
    for s in range(s_max, -1, -1):
        n = int(math.ceil((s_max + 1) / (s + 1) * eta**s - 1e-9))
        out.append([(_floor_div(n, eta, i), s_max - s + i) for i in range(s + 1)])
    return out


class BracketState(struct.PyTreeNode):
    """Attributes:
    t: int32, rounds told (the schedule's position is ``t mod period``).
    budget: int32 ``[m]``, the ladder index of each member of the last ask.
    cur_archs, cur_scores: the rung being told (``[S, length]``, ``[S]``; ``-EMPTY``: empty).
    prev_archs, prev_scores: the previous rung, sorted by reward, best first.
    num_told: int32.
    model: the strategy's model data (BOHB: its observations; an empty dict otherwise).
    """

    t: jax.Array
    budget: jax.Array
    cur_archs: jax.Array
    cur_scores: jax.Array
    prev_archs: jax.Array
    prev_scores: jax.Array
    num_told: jax.Array
    model: dict


@dataclasses.dataclass(frozen=True)
class _Bracketed(DiscreteStrategy):
    """Successive halving over a static schedule of brackets (see the module docstring)."""

    spec: DecisionSpec
    population_size: int = 1
    eta: float = 3.0
    min_budget: float | None = None
    max_budget: float | None = None
    budgets: tuple | None = None
    budget_resource: str = "epochs"
    STATIC = ("eta", "min_budget", "max_budget", "budgets", "budget_resource")

    def __post_init__(self):
        if int(self.population_size) < 1:
            raise ValueError(f"population_size must be >= 1, got {self.population_size}")
        if self.budget_resource not in BUDGET_RESOURCES:
            raise FidelityError(
                f"unknown budget_resource {self.budget_resource!r}; known: {BUDGET_RESOURCES}"
            )
        ladder = budget_ladder(self.min_budget, self.max_budget, self.eta, self.budgets)
        object.__setattr__(self, "budgets", ladder)
        object.__setattr__(self, "eta", float(self.eta))
        object.__setattr__(self, "min_budget", ladder[0])
        object.__setattr__(self, "max_budget", ladder[-1])

    def brackets(self) -> list[list[tuple[int, int]]]:
        """The rungs ``(n_i, level_i)`` of each bracket of one cycle, as the paper's."""
        return hyperband_brackets(len(self.budgets), self.eta)

    @functools.cached_property
    def _schedule(self):
        """Per round of one cycle: (level, first slot, is_new, ends_rung); and the slots S."""
        m = int(self.population_size)
        rows, slots = [], 1
        for bracket in self.brackets():
            n0 = bracket[0][0] * m
            for i, (_, level) in enumerate(bracket):
                size = max(m, _floor_div(n0, self.eta, i) // m * m)
                slots = max(slots, size)
                q = size // m
                rows += [(level, j * m, i == 0, j == q - 1) for j in range(q)]
        table = np.asarray(rows, np.int32)
        return tuple(map(tuple, table.T.tolist())), slots

    @property
    def fidelity_schedule(self) -> tuple[int, ...]:
        """The ladder index of each round of one cycle (static; see ``jnas.strategies.base``)."""
        return self._schedule[0][0]

    @property
    def period(self) -> int:
        """Rounds in one cycle of brackets."""
        return len(self._schedule[0][0])

    @property
    def default_params(self):
        return NoParams()

    def _init_model(self, key):
        del key
        return {}

    def _sample(self, key, state, params):
        del state, params
        return discrete.sample_uniform(self.spec, key)

    def _observe(self, model, archs, rewards, level):
        del archs, rewards, level
        return model

    def init(self, key: jax.Array, params=None) -> BracketState:
        del params
        (_, slots), length = self._schedule, self.spec.length
        return BracketState(
            t=jnp.zeros((), jnp.int32),
            budget=jnp.full((self.population_size,), len(self.budgets) - 1, jnp.int32),
            cur_archs=jnp.zeros((slots, length), jnp.int32),
            cur_scores=jnp.full((slots,), -EMPTY, jnp.float32),
            prev_archs=jnp.zeros((slots, length), jnp.int32),
            prev_scores=jnp.full((slots,), -EMPTY, jnp.float32),
            num_told=jnp.zeros((), jnp.int32),
            model=self._init_model(key),
        )

    def _row(self, t):
        (level, first, is_new, ends), _ = self._schedule
        r = t % self.period
        pick = lambda col: jnp.asarray(col, jnp.int32)[r]
        return pick(level), pick(first), pick(is_new).astype(bool), pick(ends).astype(bool)

    def fidelities(self, state: BracketState) -> jax.Array:
        """int32 ``[population_size]``: each member's index into ``budgets`` (last ask)."""
        return state.budget

    def ask(self, key: jax.Array, state: BracketState, params=None):
        """New candidates at a bracket's first rung, else the best of the previous rung.

        Returns:
          ``(archs int32 [population_size, length], state)``; ``fidelities(state)`` then
          gives their budgets.
        """
        params = self.default_params if params is None else params
        level, first, is_new, _ = self._row(state.t)
        m = self.population_size
        fresh = jax.vmap(lambda k: self._sample(k, state, params))(member_keys(key, m))
        promoted = state.prev_archs[first + jnp.arange(m)]
        archs = jnp.where(is_new, fresh, promoted)
        return archs, state.replace(budget=jnp.full((m,), level, jnp.int32))

    def tell(self, state: BracketState, archs: jax.Array, rewards: jax.Array, params=None):
        """Stores the rewards in the current rung; at a rung's end sorts it for the next.

        A non-finite reward leaves the state unchanged. Metrics: ``num_told``, ``budget``
        (the budget value of this round).
        """
        del params
        rewards = jnp.asarray(rewards, jnp.float32)
        archs = jnp.asarray(archs, jnp.int32)
        level, first, _, ends = self._row(state.t)
        slots = first + jnp.arange(self.population_size)
        cur_archs = state.cur_archs.at[slots].set(archs)
        cur_scores = state.cur_scores.at[slots].set(rewards)
        order = jnp.argsort(-cur_scores, stable=True)  # best first; ties: earlier slot
        new = state.replace(
            t=state.t + 1,
            cur_archs=cur_archs,
            cur_scores=jnp.where(ends, -EMPTY, cur_scores),
            prev_archs=jnp.where(ends, cur_archs[order], state.prev_archs),
            prev_scores=jnp.where(ends, cur_scores[order], state.prev_scores),
            num_told=state.num_told + rewards.shape[0],
            model=self._observe(state.model, archs, rewards, level),
        )
        state = keep_if_finite(rewards, new, state)
        budget = jnp.asarray(self.budgets, jnp.float32)[level]
        return state, {"num_told": state.num_told, "budget": budget}


@STRATEGIES.register("hyperband", kind="discrete")
@dataclasses.dataclass(frozen=True)
class Hyperband(_Bracketed):
    """Hyperband (Li et al., JMLR 2018) with uniformly drawn candidates.

    Attributes (static): ``eta`` (default 3), ``min_budget`` and ``max_budget`` (the
    geometric ladder) or ``budgets`` (an explicit one), ``budget_resource``.
    """


@STRATEGIES.register("successive_halving", kind="discrete")
@dataclasses.dataclass(frozen=True)
class SuccessiveHalving(_Bracketed):
    """Successive halving: Hyperband's most aggressive bracket (s = s_max), repeated.

    Attributes (static): as :class:`Hyperband`, and ``num_configs`` (candidates at the
    first rung; default eta^s_max, Li et al.'s n for s = s_max).
    """

    num_configs: int | None = None
    STATIC = _Bracketed.STATIC + ("num_configs",)

    def __post_init__(self):
        super().__post_init__()
        if self.num_configs is not None and int(self.num_configs) < 1:
            raise ValueError(f"num_configs must be >= 1, got {self.num_configs}")

    def brackets(self) -> list[list[tuple[int, int]]]:
        s = len(self.budgets) - 1
        n = int(self.num_configs or math.ceil(self.eta**s - 1e-9))
        return [[(_floor_div(n, self.eta, i), i) for i in range(s + 1)]]


@struct.dataclass
class BOHBParams:
    """BOHB's traced hyper-parameters (HpBandSter's defaults; see :class:`BOHB`)."""

    top_n_percent: jax.Array = 15.0
    random_fraction: jax.Array = 1.0 / 3.0
    min_bandwidth: jax.Array = 1e-3


@STRATEGIES.register("bohb", kind="discrete")
@dataclasses.dataclass(frozen=True)
class BOHB(_Bracketed):
    """BOHB (Falkner, Klein & Hutter, ICML 2018): Hyperband's brackets, new candidates from
    a TPE-style density-ratio model, as HpBandSter's ``config_generators/bohb.py``.

    Per budget the strategy keeps the (architecture, loss = -reward) observations (a ring
    buffer of ``max_observations``). A model exists at a budget once it has n observations
    with n_good = max(d+1, floor(top_n_percent n / 100)) and n_bad = min(max(d+1,
    floor((100 - top_n_percent) n / 100)), n - n_good) both above d (d = positions of an
    architecture, HpBandSter's ``min_points_in_model`` = d+1). New candidates come from the
    model of the *largest* budget that has one; with probability ``random_fraction``, or
    while no budget has one, they are drawn uniformly (``sample_uniform``).

    The model: two product-kernel densities, l over the n_good best observations and g
    over the next n_bad, with statsmodels' ``normal_reference`` bandwidth per position
    (1.06 std n^(-1/(4+d)), clipped to [``min_bandwidth``, (c-1)/c]) and the Aitchison-Aitken
    categorical kernel (1 - bw on the datum's value, bw/(c-1) elsewhere). ``num_samples``
    candidates are drawn from l (a random good datum; each position kept with probability
    1 - bw, else uniform) and the one with the smallest max(g, 1e-32) / max(l, 1e-32)
    (first on ties) is asked. Written in JAX so that it runs inside the compiled scan.

    Differences from HpBandSter: statsmodels' kernel divides by the number of values seen
    in the KDE's data (infinite when a position has one value, which HpBandSter catches);
    here c is the position's number of choices. Nor does statsmodels bound the bandwidth:
    the normal reference of codes spread over 0..4 exceeds 1 (e.g. 1.06 x 1.41 x 40^-0.1 =
    1.03 for 40 uniform observations), which makes 1 - bw negative, g(x) negative and the
    ratio's clamp pick arbitrary candidates (measured here on a toy objective: proposals
    worse than uniform). Aitchison & Aitken's kernel is a density for bw in [0, (c-1)/c],
    where (c-1)/c is the uniform kernel; bandwidths are clipped there. HpBandSter's
    ``bandwidth_factor`` (3) widens only continuous parameters' proposals; every position
    here is categorical, so it has no role. HpBandSter keeps every observation; here the
    newest ``max_observations`` per budget.

    Attributes (static): as :class:`Hyperband`, plus ``num_samples`` (64),
    ``max_observations`` (256), ``min_points_in_model`` (None: d + 1), ``exclude_observed``
    (False, as HpBandSter; True: a model proposal already observed at the model's budget is
    passed over for another sample, unless all are; not part of HpBandSter's BOHB),
    ``codes`` (``"index"``: the bandwidths' normal reference is computed on the category
    indices 0..c-1, as HpBandSter; ``"unit"``: on index / c, as syne-tune 0.14.2's KDE
    searcher encodes a categorical value, which gives c times smaller bandwidths; see
    docs/multi_fidelity.md for what each gives on NAS-Bench-201). Params (traced):
    ``top_n_percent`` (15), ``random_fraction`` (1/3), ``min_bandwidth`` (1e-3).
    """

    num_samples: int = 64
    max_observations: int = 256
    min_points_in_model: int | None = None
    exclude_observed: bool = False
    codes: str = "index"
    STATIC = _Bracketed.STATIC + (
        "num_samples",
        "max_observations",
        "min_points_in_model",
        "exclude_observed",
        "codes",
    )

    def __post_init__(self):
        super().__post_init__()
        d = self.spec.length
        if int(self.num_samples) < 1 or int(self.max_observations) < 1:
            raise ValueError("num_samples and max_observations must be >= 1")
        if self.codes not in CODES:
            raise ValueError(f"codes must be one of {CODES}, got {self.codes!r}")
        if self.min_points_in_model is not None and int(self.min_points_in_model) < d + 1:
            raise ValueError(
                f"min_points_in_model must be >= d + 1 = {d + 1} (HpBandSter's floor), got "
                f"{self.min_points_in_model}"
            )

    @property
    def default_params(self) -> BOHBParams:
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        return BOHBParams(f32(15.0), f32(1.0 / 3.0), f32(1e-3))

    def check_params(self, params) -> None:
        top = float(params.top_n_percent)
        if not 0 < top < 100:
            raise ValueError(f"top_n_percent must be in (0, 100), got {top}")
        if not 0 <= float(params.random_fraction) <= 1:
            raise ValueError(f"random_fraction must be in [0, 1], got {params.random_fraction}")
        if not float(params.min_bandwidth) > 0:
            raise ValueError(f"min_bandwidth must be > 0, got {params.min_bandwidth}")

    def _init_model(self, key):
        del key
        k, c, d = len(self.budgets), int(self.max_observations), self.spec.length
        return dict(
            archs=jnp.zeros((k, c, d), jnp.int32),
            loss=jnp.full((k, c), EMPTY, jnp.float32),
            count=jnp.zeros((k,), jnp.int32),
        )

    def _observe(self, model, archs, rewards, level):
        c = int(self.max_observations)
        slots = (model["count"][level] + jnp.arange(archs.shape[0])) % c
        return dict(
            archs=model["archs"].at[level, slots].set(archs),
            loss=model["loss"].at[level, slots].set(-rewards),
            count=model["count"].at[level].add(archs.shape[0]),
        )

    def _split_sizes(self, n, params):
        """HpBandSter's n_good and n_bad (rows) for n observations, and whether a model fits."""
        d = self.spec.length
        min_points = int(self.min_points_in_model or d + 1)
        top = params.top_n_percent
        n_good = jnp.maximum(min_points, jnp.floor(top * n / 100.0).astype(jnp.int32))
        n_bad = jnp.maximum(min_points, jnp.floor((100.0 - top) * n / 100.0).astype(jnp.int32))
        good_rows = jnp.minimum(n_good, n)
        bad_rows = jnp.clip(n - n_good, 0, None)
        bad_rows = jnp.minimum(n_bad, bad_rows)
        fits = (n >= min_points) & (good_rows > d) & (bad_rows > d)
        return good_rows, bad_rows, fits

    def model_level(self, state: BracketState, params=None) -> jax.Array:
        """The ladder index whose model proposes candidates (-1: none yet, random sampling)."""
        params = self.default_params if params is None else params
        n = jnp.minimum(state.model["count"], int(self.max_observations))
        _, _, fits = self._split_sizes(n, params)
        return jnp.max(jnp.where(fits, jnp.arange(len(self.budgets)), -1))

    def _kde(self, data, mask, num, params):
        """Bandwidths ``[d]`` (normal reference, clipped) of the rows of ``data`` in ``mask``."""
        c = jnp.asarray(self.spec.num_choices, jnp.float32)
        x = data.astype(jnp.float32)
        if self.codes == "unit":  # syne-tune's encoding of a categorical value: index / c
            x = x / c
        w = mask.astype(jnp.float32)[:, None]
        nf = jnp.maximum(num, 1).astype(jnp.float32)
        mean = jnp.sum(w * x, 0) / nf
        std = jnp.sqrt(jnp.sum(w * (x - mean) ** 2, 0) / nf)
        bw = 1.06 * std * nf ** (-1.0 / (4.0 + self.spec.length))
        top = jnp.maximum((c - 1.0) / c, params.min_bandwidth)  # the uniform kernel
        return jnp.clip(bw, params.min_bandwidth, top)

    def _pdf(self, xs, data, mask, num, bw):
        """Product-kernel density of each row of ``xs`` ``[s, d]`` (statsmodels' gpke)."""
        c = jnp.asarray(self.spec.num_choices, jnp.float32)
        off = bw / jnp.maximum(c - 1.0, 1.0)
        eq = xs[:, None, :] == data[None, :, :]  # [s, n, d]
        k = jnp.prod(jnp.where(eq, 1.0 - bw, off), axis=-1)  # [s, n]
        return jnp.sum(jnp.where(mask[None, :], k, 0.0), -1) / jnp.maximum(num, 1)

    def _sample(self, key, state, params):
        # The uniform draw uses the member's key itself, as Hyperband's: without a model (or
        # with random_fraction 1) BOHB asks what Hyperband asks, draw for draw.
        random_arch = discrete.sample_uniform(self.spec, key)
        s, d = int(self.num_samples), self.spec.length
        # The model's draws: one uniform array (one random-bits program to compile, not six)
        u = jax.random.uniform(jax.random.fold_in(key, 1), (1 + s + 2 * s * d,))
        coin, u_pick = u[0], u[1 : 1 + s]
        u_keep, u_value = u[1 + s :].reshape(2, s, d)
        level = self.model_level(state, params)
        model = state.model
        lv = jnp.maximum(level, 0)
        data, loss = model["archs"][lv], model["loss"][lv]
        n = jnp.minimum(model["count"][lv], int(self.max_observations))
        good_rows, bad_rows, _ = self._split_sizes(n, params)
        order = jnp.argsort(loss, stable=True)  # empty slots (EMPTY) last
        rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
        good = rank < good_rows
        bad = (rank >= good_rows) & (rank < good_rows + bad_rows)
        bw_good = self._kde(data, good, good_rows, params)
        bw_bad = self._kde(data, bad, bad_rows, params)
        pick = jnp.floor(u_pick * jnp.maximum(good_rows, 1)).astype(jnp.int32)
        datum = data[order[pick]]  # [s, d], a random good observation each
        keep = u_keep < 1.0 - bw_good
        n_choices = jnp.asarray(self.spec.num_choices, jnp.float32)
        values = jnp.floor(u_value * n_choices).astype(jnp.int32)  # uniform over the choices
        xs = jnp.where(keep, datum, values)
        l = self._pdf(xs, data, good, good_rows, bw_good)  # noqa: E741 - the paper's l(x)
        g = self._pdf(xs, data, bad, bad_rows, bw_bad)
        ratio = jnp.maximum(g, 1e-32) / jnp.maximum(l, 1e-32)
        if self.exclude_observed:
            seen = jnp.any(jnp.all(xs[:, None, :] == data[None], -1) & (loss < jnp.inf), -1)
            ratio = jnp.where(seen, jnp.inf, ratio)
        best = xs[jnp.argmin(ratio)]
        use_model = (level >= 0) & (coin >= params.random_fraction)
        return jnp.where(use_model, best, random_arch)
