"""The native 1x1 weight gradient against float64 at the vector width JNAS_PW_LANES forces
(run by tests/ops/pointwise_test.py)."""

import json

import jax
import numpy as np

from jnas.ops import native

assert native.available()
rng = np.random.default_rng(0)
err = 0.0
for lead, ci, co in [((3, 4, 4), 36, 36), ((2, 5, 5), 144, 36), ((2, 3, 3), 17, 100)]:
    x = rng.standard_normal((*lead, ci)).astype(np.float32)
    dy = rng.standard_normal((*lead, co)).astype(np.float32)
    want = np.einsum("mi,mo->io", x.reshape(-1, ci).astype(np.float64), dy.reshape(-1, co))
    got = np.asarray(jax.jit(native.pw_wgrad)(x, dy))
    err = max(err, float(np.abs(got - want).max() / np.abs(want).max()))
print("RESULT", json.dumps(err))
