"""Progress of long loops: a tqdm bar (rate and ETA) that also works in logs and CI."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    """A progress bar over steps ``[start, total)`` showing a few metrics.

    Outside a terminal (CI, log files) it prints a line every ``mininterval`` seconds.
    """

    def __init__(self, total: int, start: int = 0, *, enabled: bool = True, desc: str = ""):
        self.enabled = enabled
        self._bar = None
        if enabled:
            tty = sys.stderr.isatty()
            self._bar = tqdm(
                total=total,
                initial=start,
                desc=desc,
                unit="step",
                dynamic_ncols=True,
                mininterval=0.5 if tty else 30.0,
                file=sys.stderr,
            )

    def update(self, step: int, metrics: dict | None = None) -> None:
        if self._bar is None:
            return
        self._bar.n = step
        if metrics:
            shown = {
                k: f"{float(v):.3f}" for k, v in metrics.items() if k.endswith(("loss", "acc"))
            }
            self._bar.set_postfix(shown, refresh=False)
        self._bar.refresh() if self._bar.n == self._bar.total else self._bar.update(0)

    def write(self, line: str) -> None:
        """Print a line without breaking the bar (also when the bar is off)."""
        if self._bar is not None:
            self._bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
