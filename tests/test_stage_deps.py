"""dvc.yaml's code deps cannot drift from the code: each stage depends on exactly the project's
modules its script imports, directly or through others (imports inside functions included), so a
change to any of them reruns the stage and no listed file is one it never reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT

PACKAGES = {"w2vpipe": REPO_ROOT / "src", "pipeline": REPO_ROOT}


def module_file(name: str) -> Path | None:
    """The project's file of module `name`, or None for a module from elsewhere."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    path = PACKAGES[parts[0]].joinpath(*parts)
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports, and `package.name` for each `from package import name`
    (a name may be a submodule)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def import_closure(script: Path) -> set[str]:
    """The project's files that `script` imports, directly or not (packages' `__init__.py` included)."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            parts = name.split(".")
            # `import a.b.c` runs a/__init__.py and a/b/__init__.py too.
            found = (module_file(".".join(parts[:end])) for end in range(1, len(parts) + 1))
            pending.extend(file for file in found if file is not None and file not in seen)
    return {path.relative_to(REPO_ROOT).as_posix() for path in seen}


STAGES = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_stage_depends_on_exactly_the_code_it_imports(stage: str) -> None:
    script = REPO_ROOT / "pipeline" / "stages" / f"{stage}.py"
    assert STAGES[stage]["cmd"] == f"python -m pipeline {stage}"  # `__main__` only dispatches to the script
    listed = {dep for dep in STAGES[stage]["deps"] if dep.endswith(".py")}
    imported = import_closure(script)
    assert sorted(imported - listed) == [], f"{stage} imports these, but dvc.yaml does not list them as deps"
    assert sorted(listed - imported) == [], f"dvc.yaml lists these as {stage}'s deps, but it never imports them"


def test_the_closure_follows_imports_inside_functions(tmp_path: Path) -> None:
    # The check above is only as good as this: train imports tracking at module level, and tracking
    # imports the evaluation module inside a function.
    closure = import_closure(REPO_ROOT / "pipeline" / "stages" / "train.py")
    assert {"pipeline/tracking.py", "src/w2vpipe/evaluation.py", "src/w2vpipe/__init__.py"} <= closure
    assert "pipeline/flow.py" not in closure and "pipeline/__main__.py" not in closure
