"""The tiny retraining under pmap on 8 host CPU devices and on one device (run by
tests/runner/train_test.py with 8 devices): results and final weights of both.

  python tests/scripts/train_pmap.py <tmp dir>
"""

import json
import os
import sys

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from runner.train_test import DATA, _config  # noqa: E402

from jnas.runner import setup_jax  # noqa: E402
from jnas.runner import train as train_lib  # noqa: E402

setup_jax()
assert jax.local_device_count() == 8
out = {}
for parallel in ("none", "pmap"):
    workdir = os.path.join(sys.argv[1], parallel)
    cfg = _config(parallel=parallel, **{"train.epochs": 1, "train.max_steps_per_epoch": 3})
    res = train_lib.train(cfg, workdir, data=DATA)
    params = train_lib.restore_state(workdir)[3].params
    out[parallel] = dict(res=res, params=[np.asarray(x).tolist() for x in jax.tree.leaves(params)])
print("RESULT" + json.dumps(out))
