#!/usr/bin/env bash
# Sets up a benchmark venv (NumPy, the PyTorch 2.11 wheel and diffusers from PyPI, once),
# then runs the neural-score comparison: scoresde vs PyTorch (DSM training) and vs
# diffusers' DDPMScheduler (ancestral sampling). Arguments go to the Python script
# (--device cpu|cuda|auto, --repeats N, --threads N, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c 'import numpy, torch' 2>/dev/null; then
  echo "setting up .venv-bench (numpy, torch==2.11.0) ..."
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q numpy torch==2.11.0
fi
if ! .venv-bench/bin/python -c 'import diffusers' 2>/dev/null; then
  echo "installing diffusers into .venv-bench ..."
  .venv-bench/bin/pip install -q diffusers
fi
exec .venv-bench/bin/python benches/compare_nn.py "$@"
