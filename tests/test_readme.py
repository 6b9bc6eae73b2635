"""Every Python block of the README and of the pages under docs/ runs as written (in a fresh
folder, one process each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCKS = [(f"{page.relative_to(ROOT).as_posix()}:{number}", block) for page in PAGES
          for number, block in enumerate(
              re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M), start=1)]


def test_the_readme_and_docs_have_python_blocks():
    assert sum(name.startswith("README.md:") for name, _ in BLOCKS) >= 3  # the quick start
    assert len(BLOCKS) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[name for name, _ in BLOCKS])
def test_python_block_runs_as_written(index, tmp_path):
    name, block = BLOCKS[index]
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # the README's commands run in a checkout
    env = {**os.environ, "OMP_NUM_THREADS": "2", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{name}:\n{block}\n{done.stderr[-3000:]}"
