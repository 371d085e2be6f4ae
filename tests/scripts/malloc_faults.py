"""Page faults per call of a jitted function with 64 MB of temporaries, and the malloc
settings' status (tests/runtime_test.py).

  python tests/scripts/malloc_faults.py import   # import jnas and its runners, then measure
  python tests/scripts/malloc_faults.py train    # measure inside experiments.train's main
  python tests/scripts/malloc_faults.py search   # measure inside experiments.search's main
  python tests/scripts/malloc_faults.py late     # run JAX first, then call tune_malloc

In ``train`` and ``search`` the entry point's host loop is replaced by the measurement, so
it runs where the retraining or search would, after everything the entry point set up.
"""

import json
import resource
import sys


def measure() -> int:
    """The median page faults of one call, once the heap has reached its steady size."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def f(x, w):  # two 32 MB temporaries (products of a thin matrix)
        a = jnp.tanh(x @ w)
        b = jnp.tanh(x @ w[::-1])
        return jnp.sum(a * b, axis=0)[:4]

    x = jax.random.normal(jax.random.PRNGKey(0), (8192, 64))
    w = jax.random.normal(jax.random.PRNGKey(1), (64, 1024))
    # The heap grows over the first calls (a call's temporaries can be allocated before the
    # previous call's are freed); then it holds enough free space.
    for _ in range(12):
        f(x, w).block_until_ready()
    faults = []
    for _ in range(7):
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x, w).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
    return sorted(faults)[3]


def run_entry_point(module_name: str, config: str, attr: str, summary: dict) -> int:
    """Run ``module_name``'s main with its host loop ``attr`` replaced by :func:`measure`."""
    import importlib

    from absl import app

    module = importlib.import_module(module_name)
    out = {}

    def host_loop(*args, **kwargs):
        out["faults"] = measure()
        return summary

    setattr(module, attr, host_loop)
    try:
        app.run(module.main, argv=[module_name, f"--config={config}", "--workdir=/nonexistent"])
    except SystemExit as e:
        assert not e.code, e.code
    return out["faults"]


mode = sys.argv[1]
if mode == "import":
    import jnas
    import jnas.runner.discrete
    import jnas.runner.search
    import jnas.runner.train  # noqa: F401

    faults = measure()
elif mode == "train":
    faults = run_entry_point(
        "experiments.train", "experiments/configs/eval_tiny.py", "train", {"steps": 0}
    )
elif mode == "search":
    summary = {"best_arch": "-", "best_reward": 0.0}
    faults = run_entry_point(
        "experiments.search", "experiments/configs/nasrl_tiny.py", "run_search", summary
    )
elif mode == "late":
    import jax

    jax.numpy.zeros(1).block_until_ready()
    import jnas.runtime

    jnas.runtime.tune_malloc()
    faults = None
else:
    raise SystemExit(f"unknown mode {mode!r}")

import jnas.runtime  # noqa: E402

print("RESULT" + json.dumps(dict(status=jnas.runtime.malloc_status(), faults=faults)))
