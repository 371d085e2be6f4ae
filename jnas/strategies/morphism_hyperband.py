"""Hyperband and successive halving over network morphisms: with ``morphism_bo`` proposing
each bracket's new networks, **BOHB over morphisms**; with ``morphism_walk`` or
``graph_random``, Hyperband over those baselines.

A morphism search (:func:`jnas.runner.morphism.search`) trains every child at the full
fidelity of ``config.child`` unless ``config.search.schedule`` names a schedule:
``"hyperband"`` (Li et al., JMLR 2018, Algorithm 1) or ``"successive_halving"`` (its most
aggressive bracket, repeated). The schedule's options are in the config section of the same
name, spelt as the discrete strategies of :mod:`jnas.strategies.multi_fidelity` take them:
``min_budget``, ``max_budget`` and ``eta`` (HpBandSter's ladder ``max * eta**-k``,
:func:`~jnas.strategies.multi_fidelity.budget_ladder`) or an explicit ladder ``budgets``,
``budget_resource`` (``epochs``, ``num_steps`` or ``data_fraction``: what a budget counts),
``min_points_in_model`` and, for successive halving, ``num_configs``.

**Rounds are rungs.** Round 0 trains the start network at the largest budget. Round r >= 1 is
rung ``(r - 1) mod P`` of the cycle of brackets (P rungs a cycle:
:meth:`MorphismSchedule.rungs`, from :func:`~jnas.strategies.multi_fidelity.hyperband_brackets`),
and ``search.rounds`` counts rungs. A bracket's first rung asks the morphism strategy for
``n_0`` new networks (``propose``); every later rung promotes the best
``n_i = floor(n_0 eta^-i)`` of the previous rung by reward (the earliest row on ties; at most
``floor(k / eta)``, at least one, of the k rows that rung has) to the next budget.
``search.children_per_round`` m multiplies ``n_0`` (m copies of each bracket sharing their
rungs, as the discrete strategies with a population of m); with m = 1 the sizes are the
paper's.

**What the strategy sees** (as BOHB builds its TPE model): the networks evaluated at the
*model budget*, the largest budget with at least ``min_points_in_model`` evaluations (3 by
default: the GP then standardises its targets over more than a pair), else the largest
budget with any (:func:`model_rows`). ``morphism_bo`` fits its GP on those rewards and morphs
children from those networks; ``morphism_walk`` draws its parents among them;
``graph_random`` draws from the space. No evaluated architecture is proposed again.

**A promoted network retrains from its parent's morphed weights** at the larger budget; it
does not continue from its own checkpoint. Each evaluation is then ``budget`` epochs (or
steps, or that fraction of the data) of training from the same start, under one cosine
schedule over that budget, as HpBandSter and the discrete loop here judge every budget from
scratch: the rewards of one rung compare networks trained alike, a reward is a function of
the network, its parent, its budget and the seed (so resume and the tests reproduce it),
and the curve-based stop sees whole curves of one schedule. Continuing would save the
lower budgets' epochs (at eta 3 over 1, 3, 9 epochs, 6 of the first bracket's 27) but give a
promoted network a learning-rate restart that its rivals never had. Children still inherit
their parents' weights: a network morphed from a parent starts from the parent's trained
variables of the evaluation at the model budget.

Budgets of ``width`` are refused: the weights a child inherits have its parent's widths.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

from jnas.strategies.base import FidelityError
from jnas.strategies.multi_fidelity import budget_ladder, hyperband_brackets

SCHEDULES = ("hyperband", "successive_halving")
# What a budget can count in a morphism search: not ``width`` (a child inherits its
# parent's variables, whose shapes are the parent's at full width).
RESOURCES = ("epochs", "num_steps", "data_fraction")
OPTIONS = ("min_budget", "max_budget", "budgets", "eta", "budget_resource", "min_points_in_model")
MIN_POINTS = 3


@dataclasses.dataclass(frozen=True)
class Rung:
    """One rung of one bracket (a round of the search).

    Attributes:
      bracket: the bracket's place in the cycle (0 first: the most aggressive).
      s: Li et al.'s s of the bracket (``s_max`` first).
      rung: i, the rung's place in its bracket (0: new networks).
      level: the index of its budget in the ladder.
      size: networks judged (n_i, times m).
    """

    bracket: int
    s: int
    rung: int
    level: int
    size: int

    @property
    def new(self) -> bool:
        return self.rung == 0


def _floor(x: float) -> int:
    return max(1, int(math.floor(x + 1e-9)))


@dataclasses.dataclass(frozen=True)
class MorphismSchedule:
    """A Hyperband or successive-halving schedule of a morphism search (module docstring).

    Raises (at construction):
      FidelityError: eta <= 1, a budget <= 0, min above max, a ladder not increasing, a
        resource a morphism search cannot vary, epochs or steps that round to equal budgets.
      ValueError: an unknown schedule, ``min_points_in_model`` or ``num_configs`` < 1.
    """

    name: str = "hyperband"
    budgets: tuple = ()
    eta: float = 3.0
    budget_resource: str = "epochs"
    min_points_in_model: int = MIN_POINTS
    num_configs: int | None = None
    children_per_round: int = 1

    def __post_init__(self):
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.name!r}; known: {list(SCHEDULES)}")
        if self.budget_resource == "width":
            raise FidelityError(
                "budget_resource 'width' cannot judge a morphism search: a child inherits its "
                f"parent's variables, whose widths are the parent's; use one of {list(RESOURCES)}"
            )
        if self.budget_resource not in RESOURCES:
            raise FidelityError(
                f"unknown budget_resource {self.budget_resource!r}; known: {list(RESOURCES)}"
            )
        ladder = budget_ladder(budgets=self.budgets, eta=self.eta)
        object.__setattr__(self, "budgets", ladder)
        object.__setattr__(self, "eta", float(self.eta))
        if self.budget_resource in ("epochs", "num_steps"):
            lengths = [int(round(b)) for b in ladder]
            if lengths[0] < 1 or any(a >= b for a, b in zip(lengths, lengths[1:], strict=False)):
                raise FidelityError(
                    f"the budgets {list(ladder)} give {self.budget_resource} {lengths}: whole "
                    "numbers >= 1 that must be strictly increasing (widen min/max_budget)"
                )
        for key in ("min_points_in_model", "children_per_round"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {v!r}")
        if self.num_configs is not None and (
            self.name != "successive_halving"
            or isinstance(self.num_configs, bool)
            or not isinstance(self.num_configs, int)
            or self.num_configs < 1
        ):
            raise ValueError(
                f"num_configs must be None or an integer >= 1 (successive_halving only), got "
                f"{self.num_configs!r}"
            )

    @classmethod
    def from_config(cls, name: str, section=None, children_per_round: int = 1):
        """The schedule ``name`` with the options of its config section (a mapping or None)."""
        options = dict(section.items()) if section is not None else {}
        known = OPTIONS + (("num_configs",) if name == "successive_halving" else ())
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown}; {name} takes {sorted(known)}")
        budgets = budget_ladder(
            options.pop("min_budget", None),
            options.pop("max_budget", None),
            options.get("eta", 3.0),
            options.pop("budgets", None),
        )
        options = {k: v for k, v in options.items() if v is not None or k == "num_configs"}
        return cls(name, budgets, children_per_round=int(children_per_round), **options)

    def header(self) -> dict:
        """What a history's rewards depend on (the history header's ``schedule``)."""
        out = dataclasses.asdict(self)
        out["budgets"] = list(self.budgets)
        return out

    def brackets(self) -> list[list[tuple[int, int]]]:
        """The paper's rungs ``(n_i, level_i)`` of each bracket of one cycle (m = 1)."""
        if self.name == "hyperband":
            return hyperband_brackets(len(self.budgets), self.eta)
        s = len(self.budgets) - 1
        n = int(self.num_configs or math.ceil(self.eta**s - 1e-9))
        return [[(_floor(n / self.eta**i), i) for i in range(s + 1)]]

    @functools.cached_property
    def rungs(self) -> tuple[Rung, ...]:
        """The rungs of one cycle, in order; rung i of a bracket judges
        ``floor(m n_0 eta^-i)`` networks (at least one)."""
        m, out = self.children_per_round, []
        s_max = len(self.budgets) - 1
        for b, bracket in enumerate(self.brackets()):
            n0, s = bracket[0][0], len(bracket) - 1
            for i, (_, level) in enumerate(bracket):
                out.append(Rung(b, s if self.name == "hyperband" else s_max, i, level, 0))
                out[-1] = dataclasses.replace(out[-1], size=_floor(m * n0 / self.eta**i))
        return tuple(out)

    @property
    def period(self) -> int:
        """Rungs (rounds) in one cycle of brackets."""
        return len(self.rungs)

    def rung_of(self, r: int) -> tuple[int, Rung]:
        """Round ``r >= 1``'s ``(bracket number in the run, rung)``."""
        if r < 1:
            raise ValueError(f"round {r}: round 0 trains the start network, outside brackets")
        cycle, j = divmod(r - 1, self.period)
        rung = self.rungs[j]
        return cycle * len(self.brackets()) + rung.bracket, rung

    def promote(self, rows: list[dict], size: int) -> list[dict]:
        """The best ``min(size, max(1, floor(len(rows) / eta)))`` rows by reward, best first
        (the earlier row on ties): successive halving's step."""
        if not rows:
            return []
        keep = min(size, _floor(len(rows) / self.eta))
        return sorted(rows, key=lambda x: (-x["reward"], x["id"]))[:keep]

    def budget_of(self, level: int) -> float:
        return self.budgets[level]


def model_rows(rows: list[dict], budgets, min_points: int) -> list[dict]:
    """The rows at the model budget: the largest budget with at least ``min_points`` rows,
    else the largest with any (BOHB's rule: the model of the largest budget that has enough
    observations). Rows carry ``budget``."""
    by_budget: dict[float, list[dict]] = {}
    for row in rows:
        by_budget.setdefault(row.get("budget"), []).append(row)
    for b in reversed(budgets):
        if len(by_budget.get(b, ())) >= min_points:
            return by_budget[b]
    for b in reversed(budgets):
        if by_budget.get(b):
            return by_budget[b]
    return []


def schedule_problems(config) -> list[tuple[str, str]]:
    """``[(key, problem)]`` of ``config.search.schedule`` and its section (none: no schedule)."""
    name = config.search.get("schedule")
    if name is None:
        return []
    if name not in SCHEDULES:
        return [("search.schedule", f"{name!r} is not None or one of {list(SCHEDULES)}")]
    try:
        MorphismSchedule.from_config(
            name, config.get(name), int(config.search.get("children_per_round", 1))
        )
    except (FidelityError, ValueError, TypeError) as e:
        return [(name, str(e))]
    return []


_EDIT = re.compile(
    r"^(?:deeper\((?P<d_at>[^,()\s]+)(?:, k(?P<kernel>\d+))?\)"
    r"|wider\((?P<w_at>[^,()\s]+), (?P<width>\d+)\)"
    r"|(?P<skip>skip_add|skip_concat)\((?P<s_at>[^,()\s]+) -> (?P<to>[^,()\s]+)\))$"
)


def parse_edit(text: str):
    """The :class:`jnas.spaces.morphism.Edit` of its text (``str(edit)``, as the history
    records it); ValueError for text that is not one."""
    from jnas.spaces.morphism import Edit

    m = _EDIT.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not the text of a morphism edit")
    if m["d_at"] is not None:
        return Edit("deeper", m["d_at"], kernel=int(m["kernel"] or 0))
    if m["w_at"] is not None:
        return Edit("wider", m["w_at"], width=int(m["width"]))
    return Edit(m["skip"], m["s_at"], m["to"])
