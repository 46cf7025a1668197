#!/usr/bin/env bash
# Install cnn-grader into ./.venv, with Fashion-MNIST from Debian where apt is available.
# Usage: ./install.sh   (then: .venv/bin/grader check all --solutions)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "install.sh: Python >= 3.11 is needed (set PYTHON=...)" >&2; exit 1; }

if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  PACKAGES=""
  [ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || PACKAGES="dataset-fashion-mnist"
  command -v chromium >/dev/null 2>&1 || PACKAGES="$PACKAGES chromium"  # headless browser: the q7 report test renders the report
  if [ -n "$PACKAGES" ]; then
    $SUDO apt-get update -qq || true
    for package in $PACKAGES; do
      $SUDO apt-get install -y -qq "$package" >/dev/null \
        || echo "install.sh: could not install $package; see datasets/README.md (data) or the README (chromium)" >&2
    done
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "from grader.quiet import import_keras; import_keras()" || { echo "install.sh: installation failed" >&2; exit 1; }
echo "install.sh: cnn-grader installed in .venv"
