"""Tests for jnas.runtime: importing jnas stops each step from page-faulting its temporaries."""

from __future__ import annotations

import platform
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource
    import jnas, jax, jax.numpy as jnp

    @jax.jit
    def f(m):  # two 32 MB temporaries (matrix products)
        a = jnp.tanh(m @ m[:1024].T)
        b = jnp.tanh(a @ m[:1024])
        return b[:4, 0] + a[-4:, 0]

    x = jax.random.normal(jax.random.PRNGKey(0), (8192, 1024))
    # The heap grows over the first calls (a call's temporaries can be allocated before the
    # previous call's are freed); then it holds enough free space.
    for _ in range(12):
        f(x).block_until_ready()
    faults = []
    for _ in range(7):
        r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        f(x).block_until_ready()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
    faults = sorted(faults)[3]  # the median call
    print("RESULT" + json.dumps(dict(status=jnas.runtime.malloc_status(), faults=faults)))
    """
)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_steps_reuse_their_memory(run_script):
    off = run_script(SCRIPT, env={"JNAS_MALLOC": "0"})
    on = run_script(SCRIPT)
    assert off["status"] == "off: JNAS_MALLOC=0"
    assert on["status"] == "on"
    # Without the settings each call maps its 64 MB of temporaries afresh: 4 KiB pages, one
    # fault each (or fewer with transparent huge pages); with them, the heap is reused.
    assert off["faults"] > 5_000, off
    assert on["faults"] < off["faults"] / 20, (on, off)


def test_late_import_is_reported(run_script):
    script = (
        "import json, jax; jax.numpy.zeros(1).block_until_ready(); import jnas; "
        "print('RESULT' + json.dumps(jnas.runtime.malloc_status()))"
    )
    status = run_script(script, timeout=120)
    assert status.startswith(("late", "off")), status
