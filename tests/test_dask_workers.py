"""The installed project on a cluster started as the README says ("On a Dask cluster"): `dask scheduler` and
`dask worker` processes of this venv, started in a folder of their own with no PYTHONPATH, so they import
only what `pip install -e .` gave them (a LocalCluster would inherit pytest's sys.path and hide a missing
package)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, VENV_BIN, stop_server, tool_env

WORKERS = 2


def installed_env(**extra: str) -> dict[str, str]:
    """The project's environment as a user's shell has it: no PYTHONPATH pointing at a checkout."""
    env = tool_env(**extra)
    env.pop("PYTHONPATH", None)
    return env


def every_file(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def stage(workdir: Path, name: str, **env: str) -> str:
    """Run stage `name` in `workdir` (not a checkout: the installed `pipeline` runs); its summary line."""
    result = subprocess.run([sys.executable, "-m", "pipeline", name], cwd=workdir, env=installed_env(**env),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def dask_cli_cluster(tmp_path: Path) -> Iterator[str]:
    """`dask scheduler` and WORKERS `dask worker` processes (one process, one thread each, as on separate
    machines), all started in their own folder; the scheduler's address once every worker has joined."""
    from distributed import Client

    home = tmp_path / "cluster"
    home.mkdir()
    scheduler_file = home / "scheduler.json"
    env = installed_env()
    processes: list[subprocess.Popen[bytes]] = []
    log = (home / "cluster.log").open("ab")
    try:
        # Port 0 and a scheduler file: the scheduler picks a free port and says which once it listens.
        processes.append(subprocess.Popen(
            [str(VENV_BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 120
        while not scheduler_file.is_file() and processes[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not scheduler_file.is_file():
            pytest.fail(f"dask scheduler did not start: {(home / 'cluster.log').read_text()[-2000:]}")
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(WORKERS):
            processes.append(subprocess.Popen(
                [str(VENV_BIN / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                 "--local-directory", str(home)], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(WORKERS, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            stop_server(process)
        log.close()


def test_stages_on_dask_cli_workers_import_the_installed_project(tmp_path: Path, dask_cli_cluster: str) -> None:
    """vectorize and examples on the README's cluster give every file a local run gives, bit for bit."""
    local = tmp_path / "local"
    local.mkdir()
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["vectorize"]["shard_lines"] = 5000  # 7 shards: tasks for both workers
    params["cluster"] = {"workers": 1}
    (local / "params.yaml").write_text(yaml.safe_dump(params))
    for name in ("download", "vectorize", "examples"):
        stage(local, name)
    remote = tmp_path / "remote"
    remote.mkdir()
    (remote / "params.yaml").write_text((local / "params.yaml").read_text())
    stage(remote, "download")
    for name in ("vectorize", "examples"):
        summary = stage(remote, name, W2V_DASK_SCHEDULER=dask_cli_cluster)
        assert f"; {WORKERS} workers at {dask_cli_cluster}; made in" in summary
    for name in ("vectorized", "examples"):
        expected = every_file(local / "data" / name)
        assert len(expected) > 7 * 2 and every_file(remote / "data" / name) == expected

