"""Atomic file and directory writes (a stage's outputs appear whole or not at all), and shards."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from w2vpipe.errors import PipelineError, disk_full_as_one_line

# A shard is a directory of plain .npy arrays: loading one costs a fraction of a millisecond,
# a third of what an .npz (a zip archive) costs, and arrays can be memory-mapped.
SHARD_GLOB = "shard-[0-9]*"


def compile_cache_dir() -> Path:
    """Where compiled programs are kept for every project of this user: W2V_COMPILE_CACHE, else
    $XDG_CACHE_HOME/w2vpipe/compiled (~/.cache/...)."""
    if os.environ.get("W2V_COMPILE_CACHE"):
        return Path(os.environ["W2V_COMPILE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "w2vpipe" / "compiled"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it onto `final` only on success.

    The temporary name keeps `final`'s suffix, because some writers (Keras) insist on it. A full disk
    is one line naming `final`, and leaves no temporary file.
    """
    with disk_full_as_one_line(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}", dir=final.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        # mkstemp makes owner-only files; outputs get the usual permissions.
        tmp.chmod(0o666 & ~_umask())
        try:
            with disk_full_as_one_line(final, temporary=tmp):
                yield tmp
                os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory beside `final`; swap it in for `final` on success.

    Leftovers of a process killed mid-write (`kill -9` runs no cleanup) are removed first: DVC runs one
    stage at a time in a checkout, so no other writer owns them. A full disk is one line naming the file
    being written (or `final`), and leaves no temporary folder.
    """
    with disk_full_as_one_line(final):
        final.parent.mkdir(parents=True, exist_ok=True)
        for leftover in final.parent.glob(f".{final.name}.*.tmp"):
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        tmp.chmod(0o777 & ~_umask())
        try:
            with disk_full_as_one_line(final, temporary=tmp):
                yield tmp
            if final.exists():
                old = final.with_name(f".{final.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def shard_name(index: int) -> str:
    """Shard `index` of a sharded output (the vectorize and examples stages: one feeds the other)."""
    return f"shard-{index:05d}"


def save_shard(directory: Path, arrays: dict[str, np.ndarray]) -> None:
    """Each array as `directory/NAME.npy`; the directory appears whole or not at all."""
    with atomic_dir(directory) as tmp:
        for name, array in arrays.items():
            np.save(tmp / f"{name}.npy", array)


def load_shard(directory: Path, names: tuple[str, ...]) -> list[np.ndarray]:
    return [np.load(directory / f"{name}.npy") for name in names]


def mapped_arrays(directory: Path, names: tuple[str, ...], fix: str) -> dict[str, np.ndarray]:
    """A shard's `NAME.npy` files, memory-mapped (milliseconds, whatever their size); one that is missing or
    unreadable is one line naming it and `fix`."""
    arrays = {}
    for name in names:
        path = directory / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as error:
            raise PipelineError(f"{path} is missing or damaged ({error}): {fix}") from None
    return arrays


def check_ids(path: Path, ids: np.ndarray, vocab_size: int, fix: str) -> None:
    """One line naming `path` and `fix` when an id lies outside the vocabulary."""
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise PipelineError(f"{path} holds ids outside the vocabulary of {vocab_size} words (from {int(ids.min())} "
                            f"to {int(ids.max())}): {fix}")
