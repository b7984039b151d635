"""What dvc.lock records of a stage, and whether the workspace still matches it.

A stage that runs inside `dvc repro` cannot ask DVC (`dvc status` needs the repository lock, which the
running `dvc repro` holds), so this reads dvc.lock itself: the same file hashes (DVC 3's plain md5),
params and outputs that DVC compares.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

LOCK_FILE = Path("dvc.lock")
PIPELINE_FILE = Path("dvc.yaml")
PARAMS_FILE = Path("params.yaml")


def _load_yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))  # YAML 1.2, as DVC reads it


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as data:
        while chunk := data.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def stage_matches_workspace(stage: str, root: Path = Path(".")) -> bool:
    """Whether `dvc repro` will find `stage` up to date: every dep and output as dvc.lock records it (a
    folder's files as its manifest in DVC's cache lists them), every param as params.yaml sets it now."""
    lock_file = root / LOCK_FILE
    if not lock_file.is_file():
        return False
    entry = (_load_yaml(lock_file) or {}).get("stages", {}).get(stage)
    declared = (_load_yaml(root / PIPELINE_FILE) or {}).get("stages", {}).get(stage)
    if entry is None or declared is None or entry.get("cmd") != declared.get("cmd"):
        return False
    files = [*entry.get("deps", []), *entry.get("outs", [])]
    recorded_params = entry.get("params", {})
    declared_params = {key for key in declared.get("params", []) if isinstance(key, str)}
    if ({item["path"] for item in files} != _declared_paths(declared)  # a dep or output added since
            or set(recorded_params.get(str(PARAMS_FILE), {})) != declared_params):
        return False
    return all(_matches(root, item) for item in files) and _params_match(root, recorded_params)


def _declared_paths(stage: dict[str, Any]) -> set[str]:
    entries = [*stage.get("deps", []), *stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    return {entry if isinstance(entry, str) else next(iter(entry)) for entry in entries}


def _matches(root: Path, item: dict[str, Any]) -> bool:
    path, md5 = root / item["path"], str(item.get("md5", ""))
    if not md5.endswith(".dir"):
        return path.is_file() and file_md5(path) == md5
    manifest = _cached_manifest(root, md5)
    return path.is_dir() and manifest is not None and all(
        (path / entry["relpath"]).is_file() and file_md5(path / entry["relpath"]) == entry["md5"]
        for entry in manifest)


def _cached_manifest(root: Path, md5: str) -> list[dict[str, str]] | None:
    """The file list DVC keeps for a folder's hash, or None when this cache does not have it."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        path = Path(repo.cache.local.oid_to_path(md5))
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _params_match(root: Path, recorded: dict[str, dict[str, Any]]) -> bool:
    for file_name, values in recorded.items():
        path = root / file_name
        current = (_load_yaml(path) or {}) if path.is_file() else {}
        for key, value in values.items():
            found: Any = current
            for part in key.split("."):
                found = found.get(part) if isinstance(found, dict) else None
            if found != value:
                return False
    return True
