"""What `pip install -e .` gives: `python -m pipeline` anywhere, and in a copy of the checkout (a DVC
experiment's, under .dvc/tmp/exps) the copy's own code, not the checkout pip points at."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO_ROOT, tool_env


def installed_run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A command as a user's shell runs it: no PYTHONPATH pointing at a checkout."""
    env = tool_env()
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_python_m_pipeline_runs_outside_a_checkout_from_the_installed_one(tmp_path: Path) -> None:
    result = installed_run("-m", "pipeline", "params", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("| key | default |")
    where = installed_run("-c", "import pipeline.stages.vectorize, w2vpipe; print(pipeline.stages.vectorize.__file__); "
                          "print(w2vpipe.__file__)", cwd=tmp_path)
    assert where.stdout.split() == [str(REPO_ROOT / "pipeline" / "stages" / "vectorize.py"),
                                    str(REPO_ROOT / "src" / "w2vpipe" / "__init__.py")], where.stderr


def test_python_m_pipeline_in_a_copy_of_the_checkout_runs_the_copys_library(tmp_path: Path) -> None:
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpcopy"  # where `dvc exp run --temp` copies it
    for folder in ("pipeline", "src"):
        shutil.copytree(REPO_ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    with (copy / "src" / "w2vpipe" / "params.py").open("a") as library:
        library.write('\n\ndef markdown_table() -> str:\n    return "the copy\'s library"\n')
    result = installed_run("-m", "pipeline", "params", cwd=copy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the copy's library"
