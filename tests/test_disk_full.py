"""A full disk, for real: a small tmpfs (mounted as root) holding the files or a whole scratch project.

Each write that finds the filesystem full stops in one line naming what it was writing, leaves no temporary
file, and leaves the outputs as they were; a training stopped so ends its MLflow run FAILED and, once space
is freed, resumes from its last checkpoint.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from test_stage_errors import examples_made  # noqa: F401 (a fixture: pytest finds it in this module by name)
from test_stage_errors import loss_steps, one_line_error, runs, set_params, stage, start_training
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_dir, atomic_file


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 8 MiB tmpfs, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {mounted.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write zeros until `disk` is full, to its last byte; the file that holds them."""
    filler = disk / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (1 << 16, 1):  # unbuffered: nothing is left to fail at close
            with pytest.raises(OSError) as full:
                while True:
                    os.write(descriptor, bytes(size))
            assert full.value.errno == errno.ENOSPC
    finally:
        os.close(descriptor)
    return filler


def leftovers(root: Path) -> list[Path]:
    """Temporary files and folders of the atomic writes."""
    return [path for path in root.rglob("*") if ".tmp" in path.name]


def test_atomic_writes_on_a_full_disk_name_their_output_and_leave_no_temporary(small_disk: Path) -> None:
    old = small_disk / "models"
    with atomic_dir(old) as tmp:
        (tmp / "weights.npy").write_bytes(b"old model")
    fill(small_disk)
    with pytest.raises(PipelineError) as raised, atomic_dir(old) as tmp:
        np.save(tmp / "weights.npy", np.zeros(1 << 20))  # numpy's short write says no errno
    assert str(raised.value).startswith(f"no space left on device while writing {old} (0.0 MiB free there): "
                                        "free space on that filesystem")
    with pytest.raises(PipelineError, match=f"while writing {small_disk / 'metrics.json'} "), \
            atomic_file(small_disk / "metrics.json") as tmp:
        tmp.write_bytes(bytes(1 << 20))
    with pytest.raises(PipelineError, match=f"while writing {old / 'copy' / 'filler'} "), atomic_dir(old) as tmp:
        shutil.copytree(small_disk, tmp / "copy", ignore=shutil.ignore_patterns("models"))  # errors gathered as text
    assert (old / "weights.npy").read_bytes() == b"old model" and not leftovers(small_disk)
    assert sorted(path.name for path in small_disk.iterdir()) == ["filler", "models"]


@pytest.fixture
def project_on_small_disk(examples_made: Path, small_disk: Path, tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """The tiny project on the small disk, its MLflow store outside (where a full project disk does not reach)."""
    workdir = small_disk / "project"
    shutil.copytree(examples_made, workdir)
    set_params(workdir, train__epochs=300)
    (tmp_path / "store").mkdir()
    yield workdir, f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def test_a_disk_filling_up_mid_training_stops_it_in_one_line_and_the_rerun_resumes(
        project_on_small_disk: tuple[Path, str]) -> None:
    workdir, store = project_on_small_disk
    training, lines = start_training(workdir, "Epoch 3/", MLFLOW_TRACKING_URI=store)
    filler = fill(workdir.parent)
    assert training.stdout is not None
    output = "".join(lines) + training.stdout.read()
    assert training.wait(timeout=300) == 2, output[-3000:]
    (error,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: no space left on device while writing {workdir / '.w2v' / 'checkpoints'}")
    assert "free space on that filesystem" in error and "Traceback" not in output
    (failed,) = runs(store)
    assert failed.info.status == "FAILED"
    assert not (workdir / "models").exists() and not (workdir / "metrics").exists() and not leftovers(workdir)

    filler.unlink()
    result = stage(workdir, "train", MLFLOW_TRACKING_URI=store)
    assert result.returncode == 0 and "resumed after epoch" in result.stdout, result.stdout + result.stderr
    (resumed,) = runs(store)
    assert resumed.info.run_id == failed.info.run_id and resumed.info.status == "FINISHED"
    assert loss_steps(store, resumed.info.run_id) == list(range(300))

    fill(workdir.parent)
    line = one_line_error(stage(workdir, "export", MLFLOW_TRACKING_URI=store))
    assert line.startswith("error: no space left on device while writing exports")
    assert not (workdir / "exports").exists() and not leftovers(workdir)


def test_a_dvc_cache_that_fills_up_stops_the_repro_in_one_line_saying_how_to_recover(small_disk: Path,
                                                                                    tmp_path: Path) -> None:
    from conftest import make_project_copy, run, tool_env

    project = make_project_copy(tmp_path / "project")
    run(["dvc", "cache", "dir", str(small_disk)], project)  # the cache on the 8 MiB disk, the workspace not
    with fill(small_disk).open("r+b") as filler:  # room for DVC's own small files, not for the 1 MiB corpus
        filler.truncate(filler.seek(0, os.SEEK_END) - (256 << 10))
    follow = ("from pipeline.dvc_run import DvcProcess, follow\n"
              "from w2vpipe.errors import PipelineError\n"
              "try:\n    follow(DvcProcess(['repro', 'download']), print)\n"
              "except PipelineError as error:\n    print('error:', error)\n")
    output = run(["python", "-c", follow], project, tool_env()).stdout
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "failed to transfer" in output  # DVC went on after it, and wrote dvc.lock
    assert "DVC ran out of disk space" in line
    assert "`dvc commit -f`" in line and "`dvc gc -w -f`" in line
