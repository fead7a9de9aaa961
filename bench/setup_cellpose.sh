#!/usr/bin/env bash
# Cellpose 3 for bench/accuracy.py, in a virtual environment of its own (.venv-cellpose):
# cellpose 3.1.1.3 (Cellpose 4 downloads its SAM weights at first use and cannot run offline)
# with the CPU build of torch 2.13.0 (a wheel on this machine's disk, or from PyPI's CPU index).
# Idempotent: re-running it with everything in place takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CELLPOSE_VENV:-.venv-cellpose}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
say() { printf '[setup-cellpose] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
if "$VENV/bin/python" -c 'import cellpose, torch, tifffile' 2>/dev/null \
   && [ "$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("cellpose"))')" = 3.1.1.3 ]; then
    say "cellpose 3.1.1.3 is installed in $VENV"
    exit 0
fi
torch_spec="torch==2.13.0"
local_wheel=$(ls /opt/wheels/torch-2.13.0+cpu-*.whl 2>/dev/null | head -n1 || true)
if [ -n "$local_wheel" ]; then torch_spec=$local_wheel; fi
say "installing $torch_spec and cellpose==3.1.1.3 into $VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "$local_wheel" ]; then
    "$VENV/bin/python" -m pip install -q "$torch_spec"
else
    "$VENV/bin/python" -m pip install -q --index-url https://download.pytorch.org/whl/cpu "$torch_spec"
fi
"$VENV/bin/python" -m pip install -q cellpose==3.1.1.3 "$torch_spec"
"$VENV/bin/python" -c 'import cellpose, torch; print("[setup-cellpose] ready: torch", torch.__version__)'
