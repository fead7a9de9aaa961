#!/usr/bin/env bash
# Idempotent set-up for ijseg on a fresh Debian/Ubuntu machine:
#   1. Debian packages the ImageJ bridge needs (Java, ImageJ 1.x, Xvfb), installed only when missing;
#   2. a virtual environment in .venv with the pinned Python packages (requirements.lock),
#      reinstalled only when the lock file or pyproject.toml changed;
#   3. ijseg itself, editable.
# Re-running it when everything is in place takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-}
DEB_PACKAGES=(default-jdk-headless imagej xvfb)

say() { printf '[setup] %s\n' "$*"; }

# --- 1. Debian packages -------------------------------------------------------------------
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${DEB_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]})); then
        say "installing Debian packages: ${missing[*]}"
        SUDO=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
                echo "[setup] error: Debian packages missing (${missing[*]}); run as root:" >&2
                echo "        apt-get update && apt-get install -y ${missing[*]}" >&2
                exit 1
            fi
        fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
else
    say "not a Debian system: install Java 17, ImageJ 1.x (ij.jar) and Xvfb yourself (see README)"
fi

# --- 2. virtual environment -----------------------------------------------------------------
if [ -z "$PYTHON" ]; then
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1; then PYTHON=$cand; break; fi
    done
fi
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.ijseg-installed"
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing pinned Python packages into $VENV (requirements.lock)"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -r requirements.lock
    "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
else
    say "Python packages up to date"
fi
# --- the compiled measurement kernels (numba), so that the first measurement does not wait for them --
"$VENV/bin/python" -c "import ijseg._kernels as k; k.warm_up()" && say "measurement kernels compiled"
# --- 4. the IJSeg ImageJ plugin, compiled against the ImageJ found (cached; rebuilt on change) --
if command -v javac >/dev/null 2>&1; then
    jar=$("$VENV/bin/python" -m ijseg.ij.plugin) && say "IJSeg plugin: $jar"
fi
say "ready: $VENV/bin/ijseg"
