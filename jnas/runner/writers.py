"""Metric writers: TensorBoard event files and JSON lines, side by side in the workdir.

``metrics.jsonl`` holds one JSON object per record (``{"step": ..., "kind": ..., **values}``)
so that runs can be compared with pandas without TensorBoard. On resume, records past the
restored step are dropped first, so a resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def _scalar(v: Any) -> float:
    return float(np.asarray(v))


class MetricWriter:
    """Writes scalars (and arrays) to ``<workdir>/tb`` and ``<workdir>/metrics.jsonl``."""

    def __init__(self, workdir: str, *, resume_step: int | None = None, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        if resume_step is not None:
            truncate_jsonl(self.jsonl_path, resume_step)
        elif os.path.exists(self.jsonl_path):
            truncate_jsonl(self.jsonl_path, 0)
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tb"))

    def write(self, step: int, kind: str, values: Mapping[str, Any]) -> None:
        """Write a record: scalars go to TensorBoard as ``kind/name``, everything to JSONL."""
        record: dict[str, Any] = {"step": int(step), "kind": kind}
        for name, v in values.items():
            arr = np.asarray(v)
            if arr.ndim == 0 and arr.dtype.kind in "fiub":
                x = _scalar(arr)
                record[name] = x if math.isfinite(x) else str(x)
                if self._tb is not None:
                    self._tb.add_scalar(f"{kind}/{name}", x, step)
            elif arr.dtype.kind in "fiub":
                record[name] = arr.tolist()
            else:
                record[name] = v if isinstance(v, (str, int, float, list, dict)) else str(v)
        with open(self.jsonl_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def write_text(self, step: int, tag: str, text: str) -> None:
        if self._tb is not None:
            self._tb.add_text(tag, text, step)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def log_step(metrics: dict, *, step: int, sums: dict, progress, writer, log_every: int) -> None:
    """A finished step's host metrics: added to the epoch's running ``sums`` (``"_n"``
    counts the steps), shown by ``progress``, and written every ``log_every`` steps."""
    for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    sums["_n"] = sums.get("_n", 0) + 1
    progress.update(step + 1, metrics)
    if (step + 1) % log_every == 0:
        writer.write(step + 1, "train_step", metrics)


def truncate_jsonl(path: str, max_step: int) -> None:
    """Keep only the records of ``path`` whose step is at most ``max_step``."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= max_step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
    """All records of a JSON-lines file."""
    with open(path) as f:
        return [json.loads(ln) for ln in f if ln.strip()]
