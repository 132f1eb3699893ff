#!/usr/bin/env bash
# The U-Net comparison (benches/compare_unet.py): scoresde vs the same U-Net in PyTorch
# (training steps/s, and sample quality after the same training), and vs diffusers'
# UNet2DModel + DDPMScheduler (sampling samples/s); one thread on each side by default.
# Arguments go to the Python script (--only train|sample|quality, --threads N, --repeats N,
# --quality-steps N, --quick, ...; --help lists them).
#
# Python side: the project's own torch (.venv, from `bash scripts/setup`) is used as it is.
# Its Python import needs packages the set-up leaves out (it links only libtorch_cpu); they,
# NumPy, safetensors and diffusers==0.42.1 are installed once with pip into .bench-py/
# (PYTHONPATH, not the venv; torch itself is never installed or changed). When diffusers
# cannot be installed the script says so and runs everything but the diffusers rows.
# pip then reports that torch's triton and cuda-bindings are missing: they are left out on
# purpose (importing torch does not need them).
set -euo pipefail
cd "$(dirname "$0")/.."
diffusers_pin="diffusers==0.42.1"
py=.venv/bin/python
deps=.bench-py
if [ ! -x "$py" ] || ! "$py" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)'; then
  echo "compare_unet: no torch in .venv; run 'bash scripts/setup' first" >&2
  exit 1
fi
export PYTHONPATH="$PWD/$deps${PYTHONPATH:+:$PYTHONPATH}"
pip_target() { "$py" -m pip install --disable-pip-version-check -q --target "$deps" "$@"; }
if ! "$py" -c 'import torch, numpy, safetensors' 2>/dev/null; then
  # torch's own requirements (CUDA libraries included: the wheel's Python module loads
  # libtorch_cuda), less triton and cuda-bindings, which importing torch does not need.
  mapfile -t torch_deps < <("$py" - <<'PY'
import importlib.metadata as md
for r in md.requires("torch") or []:
    spec, _, marker = r.partition(";")
    name = spec.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()
    if "extra ==" in marker or name in ("triton", "cuda-bindings", "setuptools"):
        continue
    print(spec.strip())
PY
)
  echo "compare_unet: installing torch's import-time requirements, numpy, safetensors and $diffusers_pin into $deps (once) ..."
  if ! pip_target "${torch_deps[@]}" numpy safetensors "$diffusers_pin"; then
    echo "compare_unet: that failed; trying without diffusers" >&2
    pip_target "${torch_deps[@]}" numpy safetensors
  fi
fi
if ! "$py" -c 'import diffusers' 2>/dev/null; then
  echo "compare_unet: installing $diffusers_pin into $deps ..."
  pip_target "$diffusers_pin" || echo "compare_unet: could not install $diffusers_pin: the diffusers rows are skipped" >&2
fi
cargo build --quiet --release --bin scoresde --example bench_unet
exec "$py" benches/compare_unet.py "$@"
