#!/usr/bin/env bash
# Sets up a benchmark venv (NumPy and the PyTorch wheel from PyPI, ~4.6 GB, once),
# then runs the side-by-side comparison. Arguments are passed to the Python script.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-bench/bin/python ] || ! .venv-bench/bin/python -c 'import numpy, torch' 2>/dev/null; then
  echo "setting up .venv-bench (numpy, torch==2.11.0) ..."
  python3 -m venv .venv-bench
  .venv-bench/bin/pip install -q numpy torch==2.11.0
fi
exec .venv-bench/bin/python benches/compare_reverse_em.py "$@"
