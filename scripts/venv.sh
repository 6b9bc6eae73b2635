#!/usr/bin/env bash
# Create or refresh .venv: CPU PyTorch first (pinned, so pip never pulls a multi-GB CUDA
# build), then this project with its dev extras. Re-installs only when pyproject.toml (or the
# choice below) changed.
#   HRM_RL_CLIENTS=1 also installs the outside RL clients tests/test_clients.py drives
#   (sb3-contrib, TorchRL, rl-zoo3; rl-zoo3 without its video and table extras, whose pins
#   would downgrade pillow and python-dateutil).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
clients="${HRM_RL_CLIENTS:-0}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
fi
stamp="$venv/.hrm_rl-installed"
want="$(sha1sum "$root/pyproject.toml" | cut -d' ' -f1)-clients$clients"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q "torch==2.13.0"
  "$venv/bin/python" -m pip install -q -e "$root[dev]"
  if [ "$clients" = "1" ]; then
    "$venv/bin/python" -m pip install -q "torch==2.13.0" "sb3-contrib>=2.3" "torchrl>=0.8" \
      optuna shimmy huggingface_hub
    "$venv/bin/python" -m pip install -q --no-deps "rl-zoo3>=2.3" sb3-team-hf-integration
  fi
  echo "$want" > "$stamp"
fi
