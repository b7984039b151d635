"""Shared fixtures: the Shakespeare corpus, a small corpus, and real servers started on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_MIRROR = Path(os.environ.get("W2V_CORPUS_MIRROR", REPO_ROOT.parent / "shared" / "corpora")).resolve()
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def shakespeare() -> Path:
    path = CORPUS_MIRROR / "shakespeare.txt"
    if not path.is_file():
        pytest.fail(f"{path} missing: set W2V_CORPUS_MIRROR to a folder holding shakespeare.txt")
    return path


@pytest.fixture
def small_corpus(tmp_path: Path, shakespeare: Path) -> Path:
    """The first 2,000 lines of Shakespeare."""
    path = tmp_path / "small.txt"
    with shakespeare.open(encoding="utf-8") as source:
        path.write_text("".join(line for _, line in zip(range(2000), source, strict=False)), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for the project's commands: this venv first on PATH, no network to reach."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "W2V_CORPUS_MIRROR": str(CORPUS_MIRROR), "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_API_URL", None)
    env.update(extra)
    return env


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env or tool_env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def make_project_copy(destination: Path, params_overrides: dict[str, object] | None = None,
                      remote: Path | None = None) -> Path:
    """A fresh git repository holding the project's files, as a clone of it would."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(("tests/", "bench/", "docs/")):
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # A clone has no dvc.lock-recorded outputs of ours: start from scratch.
    (destination / "dvc.lock").unlink(missing_ok=True)
    if params_overrides:
        import yaml

        params = yaml.safe_load((destination / "params.yaml").read_text())
        for key, value in params_overrides.items():
            section, _, name = key.partition(".")
            params[section][name] = value
        (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = tool_env()
    run(["git", "init", "-q", "-b", "main"], destination, env)
    run(["git", "config", "user.email", "test@example.com"], destination, env)
    run(["git", "config", "user.name", "test"], destination, env)
    if remote is not None:
        run(["dvc", "remote", "modify", "storage", "url", str(remote)], destination, env)
    run(["git", "add", "-A"], destination, env)
    run(["git", "commit", "-q", "-m", "project copy"], destination, env)
    return destination


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server on 127.0.0.1, one per test session."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = tool_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log = (home / "server.log").open("w")
    process = subprocess.Popen([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
