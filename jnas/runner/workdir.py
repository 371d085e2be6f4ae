"""A workdir belongs to one config: a rerun is compared with the workdir's ``config.json``.

Every host loop writes the config of its run to ``<workdir>/config.json`` and resumes from
the workdir's last checkpoint when rerun. :func:`check_workdir` runs first (before anything
is written or compiled) and refuses a rerun whose config differs from that file in a key
that changes the results, naming each such key with its old and new values; the workdir is
left byte-identical. ``allow_config_change=True`` (the entry points'
``--allow_config_change``) accepts the difference: once the host loop's own checks passed
(:func:`record_config`), ``config.json`` holds the new config and ``config_changes.jsonl``
gets one line with what changed.

Keys that do not change the results (:data:`NEUTRAL_KEYS`, any depth, e.g. also
``retrain.progress``): how often the run logs or checkpoints, how many checkpoints it keeps,
the progress display and ``train.stop_after_steps`` (a stop as if killed: the resumed run is
bit for bit the uninterrupted one), and ``runtime.source`` (where the runtime switches came
from; what they asked for and resolved to do count). Everything else counts, including a
key one config has and the other lacks, except a key added to the configs later
(:data:`ADDED_KEYS`) that one config lacks and the other holds at the value that computes
what its absence computed: a workdir written before the key existed resumes.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from jnas.errors import ConfigError, WorkdirConfigError, clip

__all__ = [
    "ABSENT",
    "ADDED_KEYS",
    "CONFIG_FILE",
    "NEUTRAL_KEYS",
    "check_workdir",
    "config_changes",
    "record_config",
]

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"
OVERRIDE_FLAG = "--allow_config_change"

# Leaf names (at any depth) whose value does not change what a run computes.
NEUTRAL_KEYS = frozenset(
    {
        "progress",
        "log_every_steps",
        "checkpoint_every_steps",
        "keep_checkpoints",
        "stop_after_steps",
    }
)
# Dotted prefixes (at any depth) that do not change what a run computes.
NEUTRAL_PREFIXES = ("runtime.source",)
# Keys added to the configs after runs recorded theirs (dotted, at any depth) -> the value
# that computes what a config without the key computed.
ADDED_KEYS = {
    "model.compute_dtype": "float32",
    "runtime.xla_gpu_options": "auto",
    "runtime.resolved.xla_gpu_options": False,
}


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT = _Absent()  # the value of a key a config lacks, in config_changes


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: tree}


def _neutral(key: str) -> bool:
    parts = key.split(".")
    if parts[-1] in NEUTRAL_KEYS:
        return True
    dotted = f".{key}."
    return any(f".{p}." in dotted for p in NEUTRAL_PREFIXES)


def _added_as_before(key: str, a: Any, b: Any) -> bool:
    """One side lacks ``key`` (one of :data:`ADDED_KEYS`) and the other holds the value that
    computes the same."""
    if a is not ABSENT and b is not ABSENT:
        return False
    value = b if a is ABSENT else a
    return any((key == k or key.endswith("." + k)) and value == v for k, v in ADDED_KEYS.items())


def _as_json(config) -> dict:
    """``config`` (a ConfigDict or mapping) as ``config.json`` stores it."""
    d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def config_changes(old: dict, new) -> list[tuple[str, Any, Any]]:
    """The keys (dotted) whose values differ between ``old`` (``config.json``'s content) and
    ``new`` (a config), except :data:`NEUTRAL_KEYS`: ``[(key, old, new)]``, sorted by key;
    a key one side lacks has the value :data:`ABSENT` there."""
    a, b = _flatten(old), _flatten(_as_json(new))
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, ABSENT), b.get(key, ABSENT)
        if va != vb and not _neutral(key) and not _added_as_before(key, va, vb):
            out.append((key, va, vb))
    return out


def _show(v) -> str:
    return "(absent)" if v is ABSENT else clip(json.dumps(v), 80)


def describe_changes(changes) -> str:
    lines = [f"  {k}: {_show(a)} -> {_show(b)}" for k, a, b in changes[:20]]
    if len(changes) > 20:
        lines.append(f"  ... and {len(changes) - 20} more")
    return "\n".join(lines)


def _read_config(workdir: str) -> dict | None:
    """The workdir's ``config.json`` (None if absent); a file that cannot be read raises."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        if not isinstance(old, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        raise WorkdirConfigError(
            f"{clip(path)} cannot be read ({clip(str(e), 200)}), so this workdir's config is "
            "unknown: restore the file or use another --workdir"
        ) from None
    return old


def check_workdir(config, workdir: str, *, allow_config_change: bool = False) -> None:
    """Refuse to run ``config`` in a ``workdir`` made by another config; writes nothing.

    Call it before anything is written to ``workdir``, with the config as ``config.json``
    would record it (inside :func:`jnas.runner.use_runtime`); the host loop then calls
    :func:`record_config` once its own checks (checkpoint shapes, genotype, history) passed.

    Args:
      config: the run's config (ConfigDict).
      workdir: the run's workdir; absent, or without ``config.json``: nothing to compare.
      allow_config_change: accept a difference (:func:`record_config` records it).

    Raises:
      ConfigError: ``workdir`` is empty or not a directory.
      WorkdirConfigError: its ``config.json`` cannot be read, or it differs from ``config``
        in keys that change the results (each named with its old and new value, unless
        ``allow_config_change``).
    """
    if not workdir:
        raise ConfigError("--workdir is empty: name the run's directory")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir {clip(workdir)} exists and is not a directory")
    old = _read_config(workdir)
    if old is None or allow_config_change:
        return
    changes = config_changes(old, config)
    if changes:
        raise WorkdirConfigError(
            f"{clip(workdir)} belongs to another config: {len(changes)} key(s) that change the "
            f"results differ from its {CONFIG_FILE} (old -> new):\n{describe_changes(changes)}\n"
            f"Use another --workdir, or pass {OVERRIDE_FLAG} to continue this workdir with the "
            "new config (library: allow_config_change=True). Nothing was changed."
        )


def record_config(config, workdir: str) -> None:
    """Write ``config`` to the workdir's ``config.json`` when it has none, or when it differs
    in keys that change the results (a change :func:`check_workdir` was allowed to accept):
    then the old and new values are appended to ``config_changes.jsonl`` first. A difference
    only in :data:`NEUTRAL_KEYS` leaves the file as it is."""
    from jnas.runner.checkpoint import write_json

    path = os.path.join(workdir, CONFIG_FILE)
    old = _read_config(workdir)
    if old is not None:
        changes = config_changes(old, config)
        if not changes:
            return
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "changes": {
                k: {"old": None if a is ABSENT else a, "new": None if b is ABSENT else b}
                for k, a, b in changes
            },
        }
        with open(os.path.join(workdir, CHANGES_FILE), "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    write_json(path, _as_json(config))
