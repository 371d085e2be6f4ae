"""Metric writers: TensorBoard event files and JSON lines, side by side in the workdir; the
one reader and repairer of the workdirs' JSON-lines files, and atomic file writes.

``metrics.jsonl`` holds one JSON object per record (``{"step": ..., "kind": ..., **values}``)
so that runs can be compared with pandas without TensorBoard. On resume, records past the
restored step are dropped first, so a resumed run's file equals an uninterrupted run's.

Every JSON-lines file of a workdir (``metrics.jsonl``, ``genotypes.jsonl``, ``history.jsonl``)
is written by appending one whole line (``append_jsonl``) and read by :func:`read_jsonl`: a
last line without its newline is a record a kill cut short in the middle of its write; it is
dropped (and removed from the file when the reader repairs it, as a resuming run does). Any
other line that is not a JSON object is damage no kill makes: :class:`JsonlError` names the
file and line, and the file is left as it is. Whole files (summaries, results, genotypes) are
written atomically (:func:`write_text`: a temporary file, then ``os.replace``), so a kill
leaves the old file or the new one, never a part.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from jnas.errors import EXIT_WORKDIR, JnasError, clip
from jnas.runner.errors import check_finite


class JsonlError(ValueError, JnasError):
    """A line of a workdir's JSON-lines file, other than a torn last line, is not a JSON
    object; the file is left as it is."""

    exit_status = EXIT_WORKDIR


def _scalar(v: Any) -> float:
    return float(np.asarray(v))


class MetricWriter:
    """Writes scalars (and arrays) to ``<workdir>/tb`` and ``<workdir>/metrics.jsonl``."""

    def __init__(
        self,
        workdir: str,
        *,
        resume_step: int | None = None,
        drop_kinds: tuple[str, ...] = (),
        tensorboard: bool = True,
    ):
        """Opens the writers; an existing ``metrics.jsonl`` keeps only its records up to
        ``resume_step`` (none below step 1 when not resuming), less those whose ``kind`` is
        in ``drop_kinds`` (records written after the last checkpoint at that step, such as
        a ``"final"`` record that is about to be written again), and loses a torn last line.
        """
        os.makedirs(workdir, exist_ok=True)
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        truncate_jsonl(self.jsonl_path, resume_step or 0, drop_kinds=drop_kinds)
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
        append_jsonl(self.jsonl_path, record)

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


class StepLog:
    """A host loop's per-step bookkeeping: the NaN guard on the ``finite`` metrics
    (:func:`jnas.runner.errors.check_finite`), then :func:`log_step`."""

    def __init__(self, writer, progress, workdir: str, log_every: int, finite, hint: str):
        self.writer, self.progress, self.log_every = writer, progress, log_every
        self.finite, self.workdir, self.hint = tuple(finite), workdir, hint

    def __call__(self, metrics: dict, *, step: int, sums: dict, last_checkpoint) -> None:
        check_finite(
            {k: metrics[k] for k in self.finite},
            step=step,
            workdir=self.workdir,
            last_checkpoint=last_checkpoint,
            hint=self.hint,
        )
        log_step(
            metrics,
            step=step,
            sums=sums,
            progress=self.progress,
            writer=self.writer,
            log_every=self.log_every,
        )


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside it, flushed to disk, then
    renamed over ``path`` (a kill leaves the old file or the new one)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def append_jsonl(path: str, record: Mapping[str, Any], *, sync: bool = False) -> None:
    """Append ``record`` to ``path`` as one line, in one write (``sync``: flushed to disk)."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _read_jsonl(path: str, error: type[Exception]) -> tuple[list[tuple[str, dict]], str, str]:
    """``([(line, record)], text, torn last line or "")`` of an existing JSON-lines file."""
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with its newline
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise error(f"{path} line {number} is not JSON ({e}): {clip(line)}") from None
        if not isinstance(record, dict):
            raise error(f"{path} line {number} is not a JSON object: {clip(line)}")
        records.append((line, record))
    if torn:
        print(
            f"dropping an incomplete last line of {path} (a write cut short): {clip(torn, 80)}",
            file=sys.stderr,
            flush=True,
        )
    return records, text, torn


def read_jsonl(
    path: str, *, repair: bool = False, error: type[Exception] = JsonlError
) -> list[dict]:
    """The records of a JSON-lines file written by :func:`append_jsonl` ([] if it does not
    exist); blank lines are skipped.

    Args:
      path: the file.
      repair: also remove a torn last line from the file (atomically), as a resuming run does.
      error: the exception class raised for a damaged line (a ``ValueError`` subclass).

    A last line without its newline was cut short by a kill while it was written: it is
    dropped (with a note on stderr). Any other line that is not a JSON object raises
    ``error`` naming the file and the line; nothing is written then.
    """
    if not os.path.exists(path):
        return []
    records, text, torn = _read_jsonl(path, error)
    if torn and repair:
        write_text(path, text[: len(text) - len(torn)])
    return [record for _, record in records]


def truncate_jsonl(
    path: str, max_step: int, *, key: str = "step", drop_kinds: tuple[str, ...] = ()
) -> None:
    """Keep only the records of ``path`` whose ``key`` is at most ``max_step`` and whose
    ``kind`` is not in ``drop_kinds``; a torn last line is dropped (:func:`read_jsonl`). The
    file is rewritten atomically, and only if something is dropped."""
    if not os.path.exists(path):
        return
    records, _, torn = _read_jsonl(path, JsonlError)
    keep = [
        line for line, r in records if r.get(key, 0) <= max_step and r.get("kind") not in drop_kinds
    ]
    if torn or len(keep) < len(records):
        write_text(path, "".join(line + "\n" for line in keep))
