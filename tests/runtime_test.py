"""Tests for jnas.runtime: importing jnas changes nothing; the entry points tune malloc so
that steps stop page-faulting their temporaries (tests/scripts/malloc_faults.py) and relaunch
with glibc's per-thread cache off so that a freed slab is reused
(tests/scripts/memalign_reuse.py, tests/scripts/relaunch_probe.py)."""

from __future__ import annotations

import platform

import pytest

from jnas import runtime

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")


@glibc_only
def test_import_leaves_malloc_alone_and_entry_points_tune_it(run_script):
    imported = run_script("malloc_faults.py", "import")
    train = run_script("malloc_faults.py", "train")
    search = run_script("malloc_faults.py", "search")
    search_off = run_script("malloc_faults.py", "search", env={"JNAS_MALLOC": "0"})
    assert imported["status"] == "not attempted"
    assert train["status"] == search["status"] == "on"
    assert search_off["status"] == "off: JNAS_MALLOC=0"
    # Untouched, glibc maps each call's temporaries (32 MB each) afresh: 4 KiB pages, one
    # fault each (or fewer with transparent huge pages); tuned, the heap is reused.
    assert imported["faults"] > 4_000, imported
    assert search_off["faults"] > 4_000, search_off
    for tuned in (train, search):
        assert tuned["faults"] < imported["faults"] / 20, (tuned, imported)


def test_late_call_is_reported(run_script):
    status = run_script("malloc_faults.py", "late", timeout=120)["status"]
    assert status.startswith(("late", "off")), status


@glibc_only
def test_freed_aligned_slab_is_reused_only_with_the_tunables(run_script):
    # The control: with mallopt's settings alone, the spare end of each 64-byte-aligned slab
    # stays in the thread's cache between the slab and the heap's top, and most requests
    # take a new 32 MB slab (glibc 2.36; not all: a spare end can be too small to split off).
    # With the tunables the heap holds one.
    alone = run_script("memalign_reuse.py")
    tuned = run_script("memalign_reuse.py", env={"GLIBC_TUNABLES": runtime.TUNABLES})
    assert alone["status"] == tuned["status"] == "on"
    assert alone["distinct"] >= 3 and alone["grown_mb"] > 2.5 * 32, alone
    assert tuned["distinct"] == 1 and tuned["grown_mb"] < 2 * 32, tuned


@glibc_only
def test_command_line_entry_point_relaunches_once_with_the_tunables(run_script):
    other = "glibc.rtld.optional_static_tls=2048"  # a user's tunable that is not malloc's
    run = run_script("relaunch_probe.py", "--probe=kept", env={"GLIBC_TUNABLES": other})
    assert run["starts"] == 2 and run["pid"] == run["first_pid"], run  # execve: same process
    assert run["tunables"] == f"{other}:{runtime.TUNABLES}", run
    assert run["status"] == "on" and run["probe"] == "kept", run
    for env, status in (
        ({"JNAS_MALLOC": "0"}, "off: JNAS_MALLOC=0"),
        (
            {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"},
            "off: GLIBC_TUNABLES sets malloc parameters",
        ),
        ({"GLIBC_TUNABLES": runtime.TUNABLES}, "on"),  # already set: nothing to relaunch for
    ):
        run = run_script("relaunch_probe.py", "--probe=x", env=env)
        assert run["starts"] == 1 and run["status"] == status, (env, run)
