"""Run `dvc repro` or `dvc exp run` and follow it stage by stage, from its own output; run git.

Both the Prefect flow (a task per stage) and `make run` (a summary at the end) need to know which
stages DVC ran, skipped or restored, and the lines each one printed; DVC says so in its output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from w2vpipe.errors import PipelineError

# How DVC announces each stage: run, unchanged, or restored from its run cache.
STAGE_HEADER = re.compile(
    r"^(?:Running stage '(?P<ran>[^']+)':"
    r"|Stage '(?P<skipped>[^']+)' didn't change, skipping"
    r"|'(?P<unchanged>[^']+\.dvc)' didn't change, skipping"
    r"|Verifying outputs in frozen stage: '(?P<frozen>[^']+)'"
    r"|Stage '(?P<restored>[^']+)' is cached - skipping run, checking out outputs)")
OUTCOMES = {"ran": "ran", "skipped": "up to date", "unchanged": "up to date", "frozen": "frozen",
            "restored": "restored from DVC's run cache"}
# How DVC names the stage that failed.
FAILED_STAGE = re.compile(r"failed to reproduce '([^']+)'")
# DVC's own error on a full disk (ENOSPC, or EDQUOT for a quota): copying an output into its cache, or
# writing its lock and temporary files.
DISK_FULL = re.compile(r"\[Errno (28|122)\]|No space left on device|Disk quota exceeded")
DISK_FULL_FIX = ("DVC ran out of disk space (copying outputs into its cache, or writing .dvc/tmp): dvc.lock may name "
                 "outputs its cache lacks; free space, then `dvc commit -f` and `dvc gc -w -f` (which removes "
                 "half-copied files); should DVC then say 'Unable to read RWLock-file', delete .dvc/tmp/rwlock")
# DVC's lines that say nothing to someone watching a run.
DVC_CHATTER = re.compile(r"^(Generating|Updating) lock file|^> |^WARNING: No file hash info found|"
                         r"^To apply the results|^\s+dvc exp apply <exp>|^Use `dvc push`")

Log = Callable[[str], None]


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment DVC runs the stages in: this interpreter first on PATH (dvc.yaml says `python`)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **(extra or {})}


class DvcProcess:
    """A running DVC command whose output is read one stage at a time."""

    def __init__(self, arguments: list[str], env: dict[str, str] | None = None) -> None:
        self.command = "dvc " + " ".join(arguments)
        self._process = subprocess.Popen([sys.executable, "-m", "dvc", *arguments], stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True, env=env or stage_env())
        self._read_ahead: str | None = None
        self.errors: list[str] = []

    def _next_line(self) -> str | None:
        if self._read_ahead is not None:
            line, self._read_ahead = self._read_ahead, None
            return line
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        return line.rstrip() if line else None

    def _pass_on(self, line: str, log: Log) -> None:
        if line.startswith(("error:", "ERROR:")):
            self.errors.append(line)
        if line.strip() and not DVC_CHATTER.search(line):
            log(line)

    def next_stage(self, log: Log) -> tuple[str, str] | None:
        """Read up to the next stage DVC announces: (stage, outcome), or None when DVC is done."""
        while (line := self._next_line()) is not None:
            header = STAGE_HEADER.match(line)
            if header:
                kind = next(name for name, value in header.groupdict().items() if value)
                return header.group(kind), OUTCOMES[kind]
            self._pass_on(line, log)
        return None

    def stage_output(self, stage: str, log: Log) -> None:
        """Pass on the current stage's lines; raise if DVC says this stage failed."""
        while (line := self._next_line()) is not None:
            if STAGE_HEADER.match(line):
                self._read_ahead = line
                return
            self._pass_on(line, log)
        failed = [match.group(1) for line in self.errors if (match := FAILED_STAGE.search(line))]
        if self._process.wait() != 0 and stage in failed:
            raise PipelineError(f"stage {stage} failed: {self.failure()}")

    def failure(self) -> str:
        """The stage's own one-line error if it printed one, else DVC's (a full disk's with its fix)."""
        own = [line.removeprefix("error: ") for line in self.errors if line.startswith("error:")]
        if not own and any(DISK_FULL.search(line) for line in self.errors):
            return DISK_FULL_FIX
        return (own or [line.removeprefix("ERROR: ") for line in self.errors] or
                [f"{self.command} exited with {self._process.returncode}"])[-1]

    def wait(self) -> None:
        """Wait for DVC to end; raise with its error line if it failed, or if it ran out of disk space (an
        output that it could not copy into its cache is recorded in dvc.lock all the same, and DVC goes on)."""
        if self._process.wait() != 0 or any(DISK_FULL.search(line) for line in self.errors):
            raise PipelineError(f"{self.command} failed: {self.failure()}")

    def stop(self) -> None:
        """End DVC if it still runs (the caller failed or was stopped)."""
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait()


def follow(process: DvcProcess, log: Log) -> dict[str, str]:
    """Each stage's outcome, with every stage's lines passed to `log`, without Prefect."""
    outcomes = {}
    try:
        while (event := process.next_stage(log)) is not None:
            stage, outcome = event
            if outcome != OUTCOMES["ran"]:  # a stage that runs announces itself
                log(f"[{stage}] {outcome}")
            process.stage_output(stage, log)
            outcomes[stage] = outcome
        process.wait()
    finally:
        process.stop()
    return outcomes


def git(*arguments: str) -> str:
    """A git command's output; a failure is one line naming it."""
    try:
        return subprocess.run(["git", *arguments], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as error:
        detail = (getattr(error, "stderr", "") or str(error)).strip().splitlines()
        raise PipelineError(f"git {' '.join(arguments)} failed ({detail[0] if detail else error}): run from the "
                            "project's git checkout, with at least one commit") from None
