#!/usr/bin/env bash
# Set up (idempotent) and run the test suite. CI calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q --timeout=600 "$@"
