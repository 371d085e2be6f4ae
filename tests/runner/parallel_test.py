"""Parallel.first_call: the step is compiled once, ahead of its first run under jit, and the
memory the compilation freed is released between the two (jnas.runtime)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnas import runtime
from jnas.runner.parallel import Parallel

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def test_first_call_compiles_once_and_releases_before_running(monkeypatch):
    compiles, released_after = [], []

    def on_compile(event, seconds, fun_name="", **_):
        if event == COMPILE_EVENT and "first_call_step" in fun_name:
            compiles.append(seconds)

    def first_call_step(state, x):
        return state + 1.0, jnp.sum(jnp.sin(x) * state)

    monkeypatch.setattr(
        runtime, "release_freed_memory", lambda: released_after.append(len(compiles))
    )
    jax.monitoring.register_event_duration_secs_listener(on_compile)
    try:
        par = Parallel("none")
        step = par.compile(first_call_step)  # the state is donated
        x = jnp.linspace(0.0, 1.0, 7)
        state, m = par.first_call(step, jnp.full((7,), 2.0), x)
        state, m2 = step(state, x)  # a later call: the same program
    finally:
        jax.monitoring.unregister_event_duration_listener(on_compile)
    assert len(compiles) == 1, compiles
    assert released_after and released_after[0] == 1  # released once compiled, before running
    np.testing.assert_allclose(m, np.sum(np.sin(np.asarray(x)) * 2.0), rtol=1e-6)
    np.testing.assert_allclose(m2, np.sum(np.sin(np.asarray(x)) * 3.0), rtol=1e-6)
    np.testing.assert_allclose(state, 4.0)
