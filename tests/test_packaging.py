"""The wheel declares every folder Python would import as a package, so `pip install` is quiet.

setuptools warns for each folder under a package that is importable (an identifier name) but
absent from ``[tool.setuptools] packages``; the bundled cores' folders are such folders.
"""
from __future__ import annotations

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
            "hrm_rl.bench": ROOT / "bench"}
    for name in _declared():
        head = next((k for k in dirs if name == k or name.startswith(k + ".")), None)
        path = (dirs[head] / Path(*name[len(head) + 1:].split(".")) if head and name != head
                else dirs[head] if head else ROOT / Path(*name.split(".")))
        assert path.is_dir(), f"{name} is declared in pyproject.toml but {path} does not exist"
