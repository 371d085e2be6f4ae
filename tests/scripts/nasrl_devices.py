"""The tiny NAS-RL search's first round on the host CPU devices (run by
tests/runner/nasrl_runner_test.py with 8 devices): where each child trained, and how many
threads trained them."""

import json
import sys
import threading

import jax
import jax.numpy as jnp

from experiments.configs import nasrl_tiny
from jnas.runner import discrete, setup_jax
from jnas.spaces.nasrl import NasRLSpace

setup_jax()
config = nasrl_tiny.get_config()
config.data.data_dir, workdir = sys.argv[1], sys.argv[2]
config.search.rounds = 1  # 3 children, on devices 0, 1, 2
seen, threads, real = [], set(), NasRLSpace.train_child


def train_child(space, arch, *args, **kwargs):
    seen.append(jnp.zeros(()).devices().pop().id)  # the device train_child's arrays go to
    threads.add(threading.get_ident())
    return real(space, arch, *args, **kwargs)


NasRLSpace.train_child = train_child
summary = discrete.search(config, workdir)
out = {"devices": jax.local_device_count(), "seen": seen, "threads": len(threads)}
print("RESULT" + json.dumps(dict(out, summary=summary)))
