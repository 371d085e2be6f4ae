r"""Run an architecture search from a config file.

  python -m experiments.search --config=experiments/configs/darts_cifar10.py \
      --workdir=runs/darts_c10 [--config.search.epochs=10 ...]
  python -m experiments.search --config=experiments/configs/nasrl_fashion_mnist.py \
      --workdir=runs/nasrl [--config.strategy=random ...]

The config's strategy picks the host loop (:func:`jnas.runner.run_search`): a gradient
strategy searches a supernet and prints the genotype it derived and where the pictures of its
cells were written (``<workdir>/cells``); a shared-weight strategy (ENAS) prints the
architecture it derived and writes the space's pictures of it (``<workdir>/pictures``); a
discrete strategy trains child networks and prints the best architecture. Rerunning the same
command resumes from the last checkpoint in ``--workdir``; a workdir belongs to one config (a
rerun with a config that changes the results is refused unless ``--allow_config_change``).
Errors: see :mod:`jnas.cli` (exit statuses).
"""

import os

from absl import flags, logging
from ml_collections import config_flags

from jnas import cli, runtime
from jnas.errors import ConfigError
from jnas.runner import run_search, setup_jax

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and genotypes.")
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
    summary = run_search(FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)
    if "arch" in summary and "arch_acc" in summary:  # a shared-weight (ENAS) search
        print(f"architecture: {summary['arch']} (validation accuracy {summary['arch_acc']:.4f})")
        _space_pictures(FLAGS.config, summary["arch"], FLAGS.workdir)
    elif "genotype" in summary:  # a gradient search: a cell derived from the supernet
        from jnas.spaces.draw import write_cell_pictures

        print(f"genotype: {summary['genotype']}")
        pictures = write_cell_pictures(summary["genotype"], os.path.join(FLAGS.workdir, "cells"))
        print(f"cell pictures: {', '.join(p for p in pictures if p.endswith('.png'))}")
    else:  # a discrete search
        print(f"best architecture: {summary['best_arch']} (reward {summary['best_reward']})")
        if summary.get("best_graph"):  # a morphism search draws its best graph
            print(f"best graph pictures: {', '.join(summary['best_graph'])} in {FLAGS.workdir}")
        if "best_test_acc" in summary:
            print(f"best network's test accuracy (searched weights): {summary['best_test_acc']}")
    if "retrain" in summary:
        print(f"retrained test accuracy: {summary['retrain'].get('test_acc')}")


def _space_pictures(config, text: str, workdir: str) -> None:
    """The pictures the space draws of an architecture (``write_pictures`` or ``draw``)."""
    from jnas.spaces.base import make_space

    space = make_space(config.space)
    draw = getattr(space, "write_pictures", None) or getattr(space, "draw", None)
    if draw is not None:
        paths = draw(space.parse(text), os.path.join(workdir, "pictures"))
        print(f"pictures: {', '.join(p for p in paths if p.endswith('.png'))}")


if __name__ == "__main__":
    cli.run(main)
