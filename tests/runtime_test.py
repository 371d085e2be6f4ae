"""Tests for jnas.runtime: importing jnas changes nothing; the entry points tune malloc so
that steps stop page-faulting their temporaries (tests/scripts/malloc_faults.py)."""

from __future__ import annotations

import platform

import pytest

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
