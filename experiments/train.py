r"""Retrain a genotype from scratch with an evaluation config, then test it.

  python -m experiments.train --config=experiments/configs/eval_cifar10.py \
      --config.genotype=DARTS_V2 --workdir=runs/eval_darts_v2

A morphism search's config (``experiments/configs/morphism_bo_*.py``) retrains a graph of
the search instead (``--config.retrain.search_workdir=DIR``: its best; or
``--config.retrain.arch=TEXT_OR_FILE``), see :func:`jnas.runner.morphism.retrain`.

``--config.genotype`` is a published name (see ``python -m experiments.cells``), a
``Genotype(...)`` text, or the path of a genotype file written by a search. A config with a
``space`` section retrains that space's architecture from its text or file instead (an ENAS
macro network: ``experiments/configs/eval_enas_macro_cifar10.py``). Rerunning the
same command resumes from the last checkpoint in ``--workdir``; a workdir belongs to one config
(a rerun with a config that changes the results is refused unless ``--allow_config_change``).
Errors: see :mod:`jnas.cli` (exit statuses).
"""

from absl import flags, logging
from ml_collections import config_flags

from jnas import cli, runtime
from jnas.errors import ConfigError
from jnas.runner import setup_jax
from jnas.runner.train import train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Evaluation config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Continue a workdir whose config.json differs from this config in keys that change the "
    "results (the change is recorded in <workdir>/config_changes.jsonl).",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise ConfigError(cli.unexpected_arguments(argv))
    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    setup_jax()
    from jnas.runner import morphism

    if morphism.is_morphism_config(FLAGS.config):  # a morphism search's: retrain its graph
        results = morphism.retrain(
            FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change
        )
        print(f"test accuracy: {results['test_acc']:.4f}, parameters: {results['params']:,}")
        print(f"graph: {results['arch']}")
        return
    results = train(FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)
    if "test_acc" in results:
        print(f"test accuracy: {results['test_acc']:.4f} (best {results['best_test_acc']:.4f})")
        print(f"parameters: {results['params']:,} ({results['params_with_aux']:,} with aux head)")
    else:
        print(f"stopped after {results['steps']} steps; rerun to resume")


if __name__ == "__main__":
    cli.run(main)
