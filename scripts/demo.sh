#!/usr/bin/env bash
# Set up .venv if needed, then run the small end-to-end demo on the CPU (about two minutes).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/venv.sh"
cd "$root"
exec .venv/bin/hrm-rl demo "$@"
