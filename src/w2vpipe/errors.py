"""The one exception the pipeline shows to users as a single line, and a full disk said as one."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

# A full filesystem, or the user's quota used up: the same fix for both.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# numpy's tofile (under np.save) says a write fell short without its errno: on a file, a full disk or quota.
NUMPY_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


class PipelineError(Exception):
    """A problem the user can fix: the message names it and says how to fix it."""


def full_disk_target(error: BaseException) -> str | None:
    """The file whose writing found its filesystem full (or "" when the error names none), None when
    `error` is no full disk. A copy names its destination; `shutil.copytree` gathers its copies' errors
    as text, with their destinations."""
    if isinstance(error, shutil.Error) and error.args and isinstance(error.args[0], list):
        reasons = {os.strerror(code) for code in DISK_FULL_ERRNOS}
        full = [destination for *_, destination, why in error.args[0] if any(text in str(why) for text in reasons)]
        return str(full[0]) if full else None
    if isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS:
        return str(error.filename2 or error.filename or "")
    if isinstance(error, OSError) and error.errno is None and NUMPY_SHORT_WRITE.fullmatch(str(error)):
        return ""
    return None


class DiskFullError(PipelineError):
    """Writing `target` found its filesystem full: where, how much is free now, and the fix."""

    def __init__(self, target: Path) -> None:
        where = target.absolute()
        while not where.exists() and where != where.parent:  # the file itself may be gone already
            where = where.parent
        free = shutil.disk_usage(where).free
        super().__init__(f"no space left on device while writing {target} ({free / 2**20:,.1f} MiB free there): "
                         "free space on that filesystem (or raise the quota) and rerun (dvc repro)")
        self.target = target


@contextlib.contextmanager
def disk_full_as_one_line(target: Path | str, temporary: Path | None = None) -> Iterator[None]:
    """A full disk (ENOSPC or EDQUOT) met inside becomes a DiskFullError naming the file: the error's own
    where it has one (a failed write() names none), else `target`; a file inside `temporary` (where
    `target` is being written, to be renamed) is named as the same file inside `target`, also when an
    inner write already said so."""

    def named(path: Path) -> Path:
        if temporary is not None and path.absolute().is_relative_to(temporary.absolute()):
            return Path(target) / path.absolute().relative_to(temporary.absolute())
        return path

    try:
        yield
    except DiskFullError as error:
        if named(error.target) == error.target:
            raise
        raise DiskFullError(named(error.target)) from None
    except OSError as error:
        found = full_disk_target(error)
        if found is None:
            raise
        raise DiskFullError(named(Path(found or target))) from None
