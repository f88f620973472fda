#!/usr/bin/env bash
# Set up the development environment in .venv (or $VENV): PyTorch (the CPU build where no
# NVIDIA GPU is present), ptyrad-core in editable mode with its built-in plugins, and the
# test dependencies. Safe to run again: it only installs what is missing or changed.
#
#   TORCH_SPEC   pip requirement for the CPU case (default torch==2.13.0, the CPU build on the
#                project's machines); set it to point pip at another CPU build elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "bootstrap: NVIDIA GPU found, installing the default (CUDA) torch build"
    "${PIP[@]}" install "torch>=2.1"
  else
    echo "bootstrap: no GPU, installing the CPU torch build (${TORCH_SPEC:-torch==2.13.0})"
    "${PIP[@]}" install "${TORCH_SPEC:-torch==2.13.0}"
  fi
fi
"${PIP[@]}" install -q -e ".[fftw,test]"
# the contributed plugin packages (contrib/*), which the test suite exercises: each is installed
# as a third-party package would be, through its own pyproject.toml and entry point
for pkg in contrib/*/; do
  if [ -f "$pkg/pyproject.toml" ]; then "${PIP[@]}" install -q --no-build-isolation -e "$pkg"; fi
done
"$VENV/bin/python" -c "import torch, ptyrad_core; print('bootstrap: ptyrad_core', ptyrad_core.__version__, 'torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')"
