"""Run a host loop, and SIGKILL this process right after it saved a given checkpoint (run by
tests/runner/resume_test.py).

  python tests/scripts/kill_after_checkpoint.py RUNNER CONFIG WORKDIR KILL_STEP [OVERRIDES]
      [REFERENCE_WORKDIR]

* RUNNER: ``train`` (``jnas.runner.train.train``) or ``search`` (``jnas.runner.run_search``,
  which picks the host loop of the config's strategy);
* CONFIG: a config module under experiments/configs (``eval_tiny``);
* KILL_STEP: the step of ``<WORKDIR>/checkpoints`` after whose save the process kills
  itself (``Checkpointer.save`` is wrapped: the save completes, then SIGKILL); ``N+K``:
  after that save, once K more children were added to a discrete search's history (a kill
  in the middle of a round); ``none``: run to the end and print ``RESULT`` +
  ``{"summary": ..., "saved": [steps saved], "cache_writes": [[program, compile s], ...]}``
  (the programs this run compiled and wrote to the persistent compilation cache: those that
  took at least ``jax_persistent_cache_min_compile_time_secs`` and were not in it);
* OVERRIDES: a JSON object of dotted config overrides (``{"data.data_dir": ...}``);
* REFERENCE_WORKDIR: first run the config uninterrupted there (same process, so the killed
  run reuses its compiled steps).
"""

import importlib
import json
import os
import signal
import sys

import jax

from jnas.config import with_overrides
from jnas.runner import run_search, setup_jax
from jnas.runner.checkpoint import Checkpointer
from jnas.runner.train import train

runner, config_name, workdir, kill_step = sys.argv[1:5]
overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
reference = sys.argv[6] if len(sys.argv) > 6 else None
run = {"train": train, "search": run_search}[runner]
config = importlib.import_module(f"experiments.configs.{config_name}").get_config()
config = with_overrides(config, overrides)
setup_jax()  # the compilation cache of $JNAS_COMPILATION_CACHE, as the entry points

# The programs compiled and written to the cache (a write happens inside the compile's span).
cache_writes, pending_writes = [], []
jax.monitoring.register_event_listener(
    lambda event, **_: (
        event == "/jax/compilation_cache/cache_misses" and pending_writes.append(event)
    )
)


def _on_compile(event, seconds, fun_name="?", **_):
    if event == "/jax/core/compile/backend_compile_duration" and pending_writes:
        cache_writes.append([fun_name, round(seconds, 2)])
        pending_writes.clear()


jax.monitoring.register_event_duration_secs_listener(_on_compile)

if reference is not None:
    run(config, reference)

# Wrap Checkpointer.save: note the steps this run saves in WORKDIR (a resumed run saves only
# later ones), and kill the process right after the save of KILL_STEP (or K history rows on).
kill_at, rows_after = None, 0
if kill_step != "none":
    kill_at, _, rows = kill_step.partition("+")
    kill_at, rows_after = int(kill_at), int(rows or 0)
directory = os.path.join(os.path.abspath(workdir), "checkpoints")
saved = []
save = Checkpointer.save
armed = {"rows": None}  # rows still to add before the kill, once KILL_STEP is saved


def save_then_kill(self, step, state, meta=None):
    save(self, step, state, meta)
    if self.directory == directory:
        saved.append(int(step))
        if int(step) == kill_at:
            if not rows_after:
                os.kill(os.getpid(), signal.SIGKILL)
            armed["rows"] = rows_after


if rows_after:
    from jnas.runner.discrete import History

    add = History.add

    def add_then_kill(self, row):
        add(self, row)
        if armed["rows"] is not None:
            armed["rows"] -= 1
            if armed["rows"] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    History.add = add_then_kill

Checkpointer.save = save_then_kill
cache_writes.clear()  # the reference run's
summary = run(config, workdir)
result = {"summary": summary, "saved": saved, "cache_writes": cache_writes}
print("RESULT" + json.dumps(result, default=str))
