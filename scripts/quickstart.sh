#!/usr/bin/env bash
# The quickstart: install jnas (and Fashion-MNIST from Debian where missing), then run a real
# DARTS search on Fashion-MNIST on the CPU with a reduced supernet, then retrain the found cell.
# Prints the genotype, the retrained test accuracy and where the cells' pictures were written.
# Usage: bash scripts/quickstart.sh [WORKDIR]   (default runs/quickstart; rerunning resumes)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${JNAS_FASHION_MNIST_DIR:-}" ]; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo")
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist
fi
python -m pip install -q -e .
python -m experiments.search --config=experiments/configs/darts_fashion_mnist.py \
  --workdir="${1:-runs/quickstart}"
