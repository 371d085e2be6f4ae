r"""Run an architecture search from a config file.

  python -m experiments.search --config=experiments/configs/darts_cifar10.py \
      --workdir=runs/darts_c10 [--config.search.epochs=10 ...]
  python -m experiments.search --config=experiments/configs/nasrl_fashion_mnist.py \
      --workdir=runs/nasrl [--config.strategy=random ...]

Rerunning the same command resumes from the last checkpoint in ``--workdir``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from jnas.runner import setup_jax
from jnas.runner.search import search

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and genotypes.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    setup_jax()
    summary = search(FLAGS.config, FLAGS.workdir)
    if "best_arch" in summary:  # a discrete search with real child networks (NAS-RL)
        print(f"best architecture: {summary['best_arch']} (reward {summary['best_reward']})")
    else:
        print(f"genotype: {summary['genotype']}")
    if "retrain" in summary:
        print(f"retrained test accuracy: {summary['retrain'].get('test_acc')}")


if __name__ == "__main__":
    app.run(main)
