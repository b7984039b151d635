"""Where a training keeps its checkpoints: one folder per training (its params and data), outside
DVC's outputs, owned by the process that trains; a killed training's folder is what its rerun resumes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from pipeline import layout
from pipeline.tracking import process_gone
from w2vpipe.corpus import file_sha256
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_dir, atomic_file
from w2vpipe.params import Params, flatten

OWNER_FILE = "owner.json"


def training_key(params: Params, examples_stats: dict[str, Any]) -> str:
    """What makes a rerun the same training: the params that shape it and the data it reads."""
    shaping = {key: value for key, value in flatten(params).items() if key.startswith(("train.", "examples."))}
    data = [file_sha256(path) for path in (layout.COUNTS_FILE, layout.VECTORIZED_DIR / layout.STATS_FILE_NAME)]
    content = json.dumps([shaping, examples_stats, data], sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def _owner(checkpoint_dir: Path) -> dict[str, Any]:
    owner_file = checkpoint_dir / OWNER_FILE
    try:
        return json.loads(owner_file.read_text())
    except (OSError, ValueError):
        return {}


def claim(key: str) -> tuple[Path, dict[str, Any]]:
    """This training's checkpoint folder, and what a killed earlier try of it left there (its MLflow
    run and TensorBoard folder; {} if none). Checkpoints of other trainings whose process is gone
    are removed: a checkpoint resumes only the training it belongs to."""
    root = layout.project_root() / layout.CHECKPOINTS_DIR
    mine = root / f"train-{key}"
    for checkpoint in sorted(root.glob("train-*")) if root.is_dir() else []:
        owner = _owner(checkpoint)
        if owner.get("host") == socket.gethostname() and not process_gone(owner.get("pid")):
            if checkpoint == mine:
                raise PipelineError(f"the same training is already running (pid {owner['pid']}, checkpoints in "
                                    f"{checkpoint}): wait for it, or stop it first")
        elif checkpoint != mine:
            shutil.rmtree(checkpoint, ignore_errors=True)
    earlier_try = {key: value for key, value in _owner(mine).items() if key in ("run_id", "tensorboard_dir") and value}
    write_owner(mine, **earlier_try)
    return mine, earlier_try


def write_owner(checkpoint_dir: Path, **details: str | None) -> None:
    """Mark the checkpoint as this process's, with the MLflow run and TensorBoard folder it continues.
    A new folder appears with its owner already in it: a concurrent training's `claim` never sees it
    ownerless (and takes it for a dead one's)."""
    content = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), **details})
    if checkpoint_dir.is_dir():
        with atomic_file(checkpoint_dir / OWNER_FILE) as tmp:
            tmp.write_text(content)
        return
    with atomic_dir(checkpoint_dir) as tmp:
        (tmp / OWNER_FILE).write_text(content)
