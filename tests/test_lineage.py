"""Lineage and orchestration details on tiny real repositories: the git.commit tag's "-dirty", DVC's
output followed stage by stage, TensorFlow's start-up noise filtered from stderr."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import run, tool_env
from pipeline.dvc_run import DvcProcess, follow, stage_env
from w2vpipe.backend import without_startup_noise
from w2vpipe.errors import PipelineError

DVC_YAML = """stages:
  first:
    cmd: python -c "open('first.txt', 'w').write('1')"
    outs: [first.txt]
  second:
    cmd: python fail.py
    deps: [first.txt]
    metrics:
      - metrics.json:
          cache: false
"""


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for command in (["git", "init", "-q", "-b", "main"], ["git", "config", "user.email", "t@example.com"],
                    ["git", "config", "user.name", "t"], ["dvc", "init", "-q"]):
        run(command, tmp_path)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    (tmp_path / "params.yaml").write_text("train:\n  epochs: 1\n")
    (tmp_path / "src.py").write_text("x = 1\n")
    (tmp_path / "fail.py").write_text("import sys\nprint('error: second broke', file=sys.stderr)\nsys.exit(2)\n")
    (tmp_path / "metrics.json").write_text("{}\n")
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "start"], tmp_path)
    monkeypatch.chdir(tmp_path)
    for name in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_git_commit_is_dirty_only_for_source_and_params(repository: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.tracking import git_commit

    head = run(["git", "rev-parse", "HEAD"], repository).stdout.strip()
    (repository / "metrics.json").write_text('{"loss": 1}\n')  # what `dvc repro` writes
    (repository / "dvc.lock").write_text("schema: '2.0'\n")
    assert git_commit() == head
    (repository / "params.yaml").write_text("train:\n  epochs: 2\n")
    assert git_commit() == f"{head}-dirty"
    monkeypatch.setenv("DVC_EXP_NAME", "sweep-1")  # an experiment's params are its own record
    assert git_commit() == head
    (repository / "src.py").write_text("x = 2\n")
    assert git_commit() == f"{head}-dirty"


def test_dvc_output_is_followed_stage_by_stage_and_a_failure_is_the_failing_stages(repository: Path) -> None:
    lines: list[str] = []
    env = stage_env(tool_env())
    assert follow(DvcProcess(["repro", "first"], env), lines.append) == {"first": "ran"}
    assert follow(DvcProcess(["repro", "first"], env), lines.append) == {"first": "up to date"}
    assert not any(line.startswith(("Running stage", "> ")) for line in lines)  # DVC's chatter left out
    process = DvcProcess(["repro"], env)
    assert process.next_stage(lines.append) == ("first", "up to date")
    process.stage_output("first", lines.append)  # DVC fails later, but not in this stage
    assert process.next_stage(lines.append) == ("second", "ran")
    with pytest.raises(PipelineError, match="^stage second failed: second broke$"):
        process.stage_output("second", lines.append)


def test_startup_noise_is_dropped_and_everything_else_kept(capfd: pytest.CaptureFixture[str]) -> None:
    with without_startup_noise():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will"
                    b" not be used.\nE0000 a real error\n")
        # One write: print() writes the text and its newline apart, and the filter thread's line could land
        # between them (pytest captures sys.stderr apart from file descriptor 2).
        sys.stderr.write("a Python warning\n")
    assert sorted(capfd.readouterr().err.splitlines()) == ["E0000 a real error", "a Python warning"]
