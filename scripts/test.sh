#!/usr/bin/env bash
# Set up .venv if needed, then run the test suite (slow tests excluded; add "-m slow" for them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
exec .venv/bin/python -m pytest "$@"
