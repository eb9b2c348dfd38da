#!/usr/bin/env bash
# Refresh constraints.txt, the pinned versions that scripts/setup.sh installs: resolve pyproject's
# dependencies afresh in a throwaway virtual environment and write what was installed. Run it on
# purpose (a new dependency, an upgrade), then run the tests and commit the file.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip setuptools
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check '.[test]'
{ echo "# Pinned by scripts/lock.sh on $(date -u +%F); scripts/setup.sh installs exactly these."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude corral; } > constraints.txt
echo "constraints.txt: $(grep -vc '^#' constraints.txt) pins"
