"""The ENAS search of the toy shared-weight space (tests/strategies/enas_test.py) run on one
device and data-parallel over 2 host CPU devices (``parallel = "pmap"``), from the same seed.

  python tests/scripts/enas_pmap.py DATA_DIR WORKDIR

Run by the slow test of tests/runner/enas_test.py; prints RESULT and the two summaries.
"""

import os

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import json
import sys

sys.path.insert(0, "tests/strategies")
from enas_test import toy_config

from jnas.runner import run_search, setup_jax

setup_jax()
data_dir, workdir = sys.argv[1:3]
out = {
    mode: run_search(toy_config(data_dir, parallel=mode), os.path.join(workdir, mode))
    for mode in ("none", "pmap")
}
print("RESULT" + json.dumps(out))
