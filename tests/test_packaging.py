"""The wheel declares every folder Python would import as a package, so `pip install` is quiet,
and it carries what a user without a checkout needs (the recipe configs, by name).

setuptools warns for each folder under a package that is importable (an identifier name) but
absent from ``[tool.setuptools] packages``; the bundled cores' folders are such folders.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]


def _declared() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def _importable(folder: Path, name: str) -> set[str]:
    """Dotted names of ``folder``'s subfolders that Python would import (identifier names)."""
    found = set()
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name.isidentifier() and sub.name != "__pycache__":
            dotted = f"{name}.{sub.name}"
            found |= {dotted} | _importable(sub, dotted)
    return found


def test_every_importable_folder_is_declared():
    declared = _declared()
    wanted = {"hrm_rl"} | _importable(ROOT / "hrm_rl", "hrm_rl")
    wanted |= {"hrm_rl.envs"} | _importable(ROOT / "envs", "hrm_rl.envs")
    wanted |= {"hrm_rl.agents"} | _importable(ROOT / "agents", "hrm_rl.agents")
    wanted |= {"hrm_rl.bench"} | _importable(ROOT / "bench", "hrm_rl.bench")
    missing = sorted(wanted - declared)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_declared_packages_exist():
    dirs = {"hrm_rl.envs": ROOT / "envs", "hrm_rl.agents": ROOT / "agents",
            "hrm_rl.bench": ROOT / "bench", "hrm_rl.configs": ROOT / "configs"}
    for name in _declared():
        head = next((k for k in dirs if name == k or name.startswith(k + ".")), None)
        path = (dirs[head] / Path(*name[len(head) + 1:].split(".")) if head and name != head
                else dirs[head] if head else ROOT / Path(*name.split(".")))
        assert path.is_dir(), f"{name} is declared in pyproject.toml but {path} does not exist"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the sources (the checkout stays untouched)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".lock")
    for name in ("hrm_rl", "envs", "agents", "bench", "configs"):
        shutil.copytree(ROOT / name, src / name, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = (tmp / "dist").glob("hrm_rl-*.whl")
    return found


def test_the_wheel_ships_every_recipe_config(wheel):
    from hrm_rl.config import bundled_configs

    with zipfile.ZipFile(wheel) as z:
        shipped = {Path(n).stem for n in z.namelist() if n.startswith("hrm_rl/configs/")
                   and n.endswith(".yaml")}
    recipes = set(bundled_configs())
    assert {"sudoku4-tiny", "maze6-tiny", "arc-tiny", "sudoku9-extreme"} <= recipes
    assert shipped == recipes == {p.stem for p in (ROOT / "configs").glob("*.yaml")}


def test_no_recipe_config_starts_from_a_run_folder():
    """configs/ holds recipes a wheel can run: a stage of a training chain (train.init_from a
    run folder) is written up in docs/recipes/ instead (docs/recipes/README.md)."""
    import yaml

    from hrm_rl.checkpoint import bundled_checkpoints

    cores = set(bundled_checkpoints())
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        train = (yaml.safe_load(path.read_text()) or {}).get("train") or {}
        init = train.get("init_from")
        assert init is None or init in cores, (
            f"{path.name}: train.init_from={init!r} is a run folder, which a wheel lacks; "
            "write the stage into docs/recipes/ (one YAML block per stage) instead")


def test_a_recipe_name_loads_from_the_installed_wheel_without_a_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)  # a wheel is its installed layout
    work = tmp_path / "work"  # no configs/ here: the names must come from the package
    work.mkdir()
    script = (
        "import hrm_rl, sys\n"
        "from pathlib import Path\n"
        "from hrm_rl.config import ConfigError, load_config, resolve_config\n"
        f"assert Path(hrm_rl.__file__).is_relative_to({str(site)!r}), hrm_rl.__file__\n"
        "path = resolve_config('sudoku4-tiny')\n"
        f"assert path == Path({str(site)!r}, 'hrm_rl', 'configs', 'sudoku4-tiny.yaml'), path\n"
        "cfg = load_config('sudoku4-tiny', ['train.steps=3'])\n"
        "assert cfg.task.size == 4 and cfg.train.steps == 3, cfg\n"
        "Path('sudoku4-tiny').write_text('task: {name: maze}\\n')\n"
        "assert resolve_config('sudoku4-tiny') == Path('sudoku4-tiny')  # a file wins\n"
        "try:\n"
        "    load_config('sudoku5-tiny')\n"
        "except ConfigError as err:\n"
        "    print(err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "config file not found: sudoku5-tiny, and no bundled recipe has that name" in (
        done.stdout)
    assert "sudoku4-tiny, sudoku4-trm-tiny" in done.stdout


def test_venv_script_installs_only_what_changed_and_keeps_the_clients(tmp_path):
    """scripts/venv.sh against a stand-in interpreter that logs each call: the project is
    installed once per pyproject.toml (quietly), the clients once, and a plain run after a
    clients run (test.sh after .ci/run) installs nothing."""
    root = tmp_path / "repo"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "venv.sh", root / "scripts" / "venv.sh")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    log = tmp_path / "calls.log"
    python = root / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/usr/bin/env bash\necho "${{PYTHONWARNINGS:-}}|$*" >> "{log}"\n')
    python.chmod(0o755)

    def run(clients: str) -> list[str]:
        log.write_text("")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
        done = subprocess.run(["bash", str(root / "scripts" / "venv.sh")], capture_output=True,
                              text=True, env={**env, "HRM_RL_CLIENTS": clients}, timeout=60)
        assert done.returncode == 0, done.stderr
        return log.read_text().splitlines()

    def project(calls):
        return [c for c in calls if f"-e {root}[dev]" in c]

    def clients(calls):
        return [c for c in calls if "rl-zoo3" in c or "sb3-contrib" in c]

    first = run("0")
    assert len(project(first)) == 1 and not clients(first)
    assert project(first)[0].startswith("ignore:Editable installation|")  # the info warning
    assert all(" install -q " in c for c in first if " pip install" in c)
    assert run("0") == []
    with_clients = run("1")
    assert not project(with_clients) and len(clients(with_clients)) == 2
    assert any("wasabi" in c for c in with_clients)  # sb3-team-hf-integration's import
    assert run("1") == [] and run("0") == [] and run("1") == []  # switching lanes is free
    with open(root / "pyproject.toml", "a") as f:
        f.write("\n# changed\n")
    changed = run("1")
    assert len(project(changed)) == 1 and len(clients(changed)) == 2
    assert run("0") == []
