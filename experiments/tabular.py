"""Searches NAS-Bench-201 as a tabular benchmark and prints mean ± std test accuracy.

  JNAS_NB201_PATH=/path/to/nb201.csv.gz \
    python -m experiments.tabular --config=experiments/configs/nb201.py [--json=rows.json]

Config overrides on the command line, e.g. `--config.seeds=10 --config.budget=200`.
"""

import json

from absl import flags, logging
from ml_collections import config_flags

from jnas import cli, runtime
from jnas.errors import ConfigError
from jnas.tabular import experiment
from jnas.validate import check_tabular_config

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_JSON = flags.DEFINE_string("json", None, "Also write the result rows as a JSON list here.")
flags.mark_flags_as_required(["config"])


def main(argv):
    runtime.tune_malloc()  # before JAX starts its CPU backend (JNAS_MALLOC=0: leave it)
    if len(argv) > 1:
        raise ConfigError(cli.unexpected_arguments(argv))
    logging.set_verbosity(logging.WARNING)
    check_tabular_config(_CONFIG.value)  # before the table is read or anything compiles
    rows = experiment.run_experiment(_CONFIG.value)
    print(experiment.format_rows(rows))
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    cli.run(main)
