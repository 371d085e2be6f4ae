"""Search strategies, each one module of this package that registers itself in
:data:`jnas.strategies.base.STRATEGIES` with its ``kind``.

* discrete strategies (``kind="discrete"``): the evosax shape of :mod:`jnas.strategies.base`;
* gradient (one-shot) strategies (``kind="gradient"``): a
  :class:`jnas.strategies.oneshot.GradientStrategy`, found by
  :func:`jnas.strategies.oneshot.gradient_strategy`; the core they share is
  :mod:`jnas.strategies.oneshot` (state, step, config plumbing) and
  :mod:`jnas.strategies.phases` (the two phases of a step).

A new method is a new module here and a config; no list elsewhere names it.
"""
