"""Run a host loop, and SIGKILL this process right after it saved a given checkpoint (run by
tests/runner/resume_test.py).

  python tests/scripts/kill_after_checkpoint.py RUNNER CONFIG WORKDIR KILL_STEP [OVERRIDES]
      [REFERENCE_WORKDIR]

* RUNNER: ``train`` (``jnas.runner.train.train``) or ``search`` (``jnas.runner.run_search``,
  which picks the host loop of the config's strategy);
* CONFIG: a config module under experiments/configs (``eval_tiny``);
* KILL_STEP: the step of ``<WORKDIR>/checkpoints`` after whose save the process kills
  itself (``Checkpointer.save`` is wrapped: the save completes, then SIGKILL), or ``none``
  to run to the end and print ``RESULT`` + ``{"summary": ..., "saved": [steps saved]}``;
* OVERRIDES: a JSON object of dotted config overrides (``{"data.data_dir": ...}``);
* REFERENCE_WORKDIR: first run the config uninterrupted there (same process, so the killed
  run reuses its compiled steps).
"""

import importlib
import json
import os
import signal
import sys

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

if reference is not None:
    run(config, reference)

# Wrap Checkpointer.save: note the steps this run saves in WORKDIR (a resumed run saves only
# later ones), and kill the process right after the save of KILL_STEP.
kill_at = None if kill_step == "none" else int(kill_step)
directory = os.path.join(os.path.abspath(workdir), "checkpoints")
saved = []
save = Checkpointer.save


def save_then_kill(self, step, state, meta=None):
    save(self, step, state, meta)
    if self.directory == directory:
        saved.append(int(step))
        if int(step) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


Checkpointer.save = save_then_kill
summary = run(config, workdir)
print("RESULT" + json.dumps({"summary": summary, "saved": saved}, default=str))
