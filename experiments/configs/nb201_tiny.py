"""A CPU-sized NAS-Bench-201 config for the end-to-end tests: 3 seeds, 12 queries, small LSTM.

  JNAS_NB201_PATH=/path/to/nb201.csv.gz \
    python -m experiments.tabular --config=experiments/configs/nb201_tiny.py

Runs in about 15 s, most of it compilation; the numbers mean little at this size.
"""

from experiments.configs import nb201


def get_config():
    config = nb201.get_config()
    config.seeds = 3
    config.budget = 12
    config.budget_unit = "queries"  # one compilation per strategy serves all three data sets
    config.evolution.pool_size = 4
    config.evolution.sample_size = 2
    config.reinforce.hidden_size = 8
    return config
