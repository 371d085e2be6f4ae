r"""Test accuracy of a retraining's final (or best) checkpoint.

  python -m experiments.evaluate --workdir=runs/eval_darts_v2 [--which=best]

Reads the run's ``config.json`` and ``genotype.txt``, restores the checkpoint, tests it on
the whole test split and writes ``<workdir>/eval_<which>.json``.
"""

import os

from absl import flags, logging

from jnas import cli, runtime
from jnas.errors import ConfigError
from jnas.runner import setup_jax
from jnas.runner.train import evaluate

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The workdir of experiments.train.")
flags.DEFINE_enum("which", "final", ["final", "best"], "Which checkpoint to test.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise ConfigError(cli.unexpected_arguments(argv))
    if not os.path.isfile(os.path.join(FLAGS.workdir, "config.json")):
        raise ConfigError(
            f"--workdir={FLAGS.workdir!r} is not a workdir of experiments.train (it has no "
            "config.json): give the --workdir a retraining ran in"
        )
    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    setup_jax()
    r = evaluate(FLAGS.workdir, which=FLAGS.which)
    print(
        f"{r['which']} checkpoint (step {r['step']}): test accuracy {r['test_acc']:.4f}, "
        f"test loss {r['test_loss']:.4f}, {r['params']:,} parameters"
    )


if __name__ == "__main__":
    cli.run(main)
