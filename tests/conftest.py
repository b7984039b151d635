"""Shared fixtures: the Shakespeare corpus, a small corpus, and real servers started on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port where connections are refused: bound (never listening) for as long as it is held, so no
    other process can start listening there meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(command: Callable[[int], list[str]], health_url: Callable[[int], str], env: dict[str, str],
                 log_file: Path, port: int | None = None, attempts: int = 3) -> tuple[subprocess.Popen[bytes], int]:
    """A real server process on 127.0.0.1, returned once `health_url` answers 200. Without a `port`, on
    a free one: if another process takes it between the pick and the server's bind, a new one is tried."""
    for _ in range(attempts):
        chosen = port or free_port()
        with log_file.open("ab") as log:
            process = subprocess.Popen(command(chosen), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health_url(chosen), timeout=2) as response:
                    if response.status == 200:
                        return process, chosen
            except OSError:
                time.sleep(0.5)
        process.kill()
        process.wait()
        if port:
            break
    pytest.fail(f"{command(0)[0]} did not start: {log_file.read_text()[-2000:]}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def mlflow_server(store: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A real MLflow tracking server on 127.0.0.1 keeping its runs and artifacts in `store`."""
    store.mkdir(parents=True, exist_ok=True)
    process, chosen = start_server(
        lambda port: [str(VENV_BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers",
                      "1", "--backend-store-uri", f"sqlite:///{store / 'server.db'}", "--artifacts-destination",
                      str(store / "artifacts")],
        lambda port: f"http://127.0.0.1:{port}/health", tool_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"),
        store / "server.log", port)
    return process, f"http://127.0.0.1:{chosen}"


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
    env = tool_env(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    process, port = start_server(
        lambda port: [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        lambda port: f"http://127.0.0.1:{port}/api/health", env, home / "server.log")
    yield f"http://127.0.0.1:{port}/api"
    stop_server(process)


@pytest.fixture(scope="session")
def dask_scheduler() -> Iterator[str]:
    """A real Dask cluster (a scheduler and 2 worker processes on 127.0.0.1), one per test session: the
    address a stage is pointed at, as at a cluster of other machines."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      host="127.0.0.1") as cluster:
        yield cluster.scheduler_address
