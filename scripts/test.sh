#!/usr/bin/env bash
# Install jnas with its test tools and run the default test suite (slow tests excluded) and the
# notebooks (with tiny settings).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
# The NAS-Bench-201 table is not shipped; use the one beside the checkout when there is one.
if [ -z "${JNAS_NB201_PATH:-}" ] && [ -f ../shared/nasbench201/nb201.csv.gz ]; then
  JNAS_NB201_PATH="$(cd ../shared/nasbench201 && pwd)/nb201.csv.gz"
  export JNAS_NB201_PATH
fi
# Two workers (whole files each): the suite is mostly XLA compilation, one core per program.
# Files run in the order tests/conftest.py gives them (the costliest directories first), not
# xdist's (files with the most tests first), so that no long file starts last.
JNAS_NOTEBOOK_TINY=1 python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder \
  --nbmake tests notebooks "$@"
