"""A one-shot search whose architecture step is skipped, not just masked, during a warm-up.

PC-DARTS (``if epoch >= 15: architect.step(...)``) and P-DARTS (``train_arch=False`` for
the first 10 epochs of each stage) train only the weights at first. :class:`WarmupSearch`
is :class:`~jnas.strategies.oneshot.OneShotSearch` with ``skip_warmup`` on: before
``arch_start_step`` a step costs one weight step plus a forward pass on the validation batch
(for the logged ``val_loss``/``val_acc``), and the validation batch does not touch the
batch-norm statistics, as in both official codes. After the warm-up the step computes
exactly what a search without the skip computes. In the fused first-order step the skip is
a ``lax.cond`` inside the scanned phase, so the network's forward and backward pass is still
compiled once (plus one forward pass).
"""

from __future__ import annotations

import dataclasses

from jnas.strategies import oneshot


@dataclasses.dataclass(frozen=True)
class WarmupSearch(oneshot.OneShotSearch):
    """:class:`OneShotSearch` that skips the architecture step before ``arch_start_step``."""

    skip_warmup: bool = True
