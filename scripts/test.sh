#!/usr/bin/env bash
# Install jnas with its test tools and run the default test suite (slow tests excluded) and the
# notebooks (with tiny settings).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -e '.[test]'
JNAS_NOTEBOOK_TINY=1 python -m pytest -q --nbmake tests notebooks
