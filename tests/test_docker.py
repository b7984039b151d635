"""The Docker image, built and run for real (`pytest -m docker`): the pipeline runs offline
(`--network none`) on the Shakespeare mirror, and its results land in a host folder mounted on /out.

The image builds on the local base (`docker/base-image.sh`, made first when missing) unless
W2V_DOCKER_BASE names another base. Where no Docker engine can be had (no docker.io, not root, dockerd
fails to start) the tests skip with one line saying so.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CORPUS_MIRROR, REPO_ROOT

pytestmark = pytest.mark.docker

LOCAL_BASE = "w2vpipe-base:bookworm"
BASE = os.environ.get("W2V_DOCKER_BASE", LOCAL_BASE)
IMAGE = "w2vpipe:test"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # lent to pip behind a TLS-inspecting proxy


def _succeeds(command: list[str], timeout: float = 60) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=timeout).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _buildkit_client() -> str | None:
    """A docker client that builds with BuildKit: one with the buildx plugin, or Docker 20.10's own
    (a newer client without buildx builds only with the legacy builder, which has no build secrets)."""
    for client in dict.fromkeys(filter(None, [shutil.which("docker"), shutil.which("/usr/bin/docker")])):
        if _succeeds([client, "buildx", "version"]):
            return client
        version = subprocess.run([client, "version", "--format", "{{.Client.Version}}"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) < 23:
            return client
    return None


def _docker(client: str, *arguments: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([client, *arguments], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DOCKER_BUILDKIT": "1"})


@pytest.fixture(scope="session")
def docker_client() -> Iterator[str]:
    """A docker client talking to a running engine; as root, dockerd is started (and stopped) here."""
    client = _buildkit_client()
    if client is None:
        pytest.skip("no Docker client that builds with BuildKit (install docker.io, or the buildx plugin)")
    daemon = None
    if not _succeeds([client, "info"]):
        if os.geteuid() != 0 or shutil.which("dockerd") is None:
            pytest.skip("no Docker engine: none answers, and starting dockerd needs root and docker.io")
        log = Path(tempfile.gettempdir()) / "w2vpipe-test-dockerd.log"
        daemon = subprocess.Popen(["dockerd"], stdout=log.open("w"), stderr=subprocess.STDOUT)
        for _ in range(60):
            if daemon.poll() is not None or _succeeds([client, "info"]):
                break
            subprocess.run(["sleep", "0.5"])
        if not _succeeds([client, "info"]):
            daemon.terminate()
            pytest.skip(f"no Docker engine: dockerd did not start (its log: {log})")
    yield client
    if daemon is not None:
        daemon.terminate()
        daemon.wait(timeout=60)


@pytest.fixture(scope="session")
def image(docker_client: str) -> str:
    """The project's image, built from this checkout on BASE (layers cached between runs)."""
    if not _succeeds([docker_client, "image", "inspect", BASE]):
        if BASE != LOCAL_BASE:
            pytest.skip(f"no base image {BASE}: pull or build it, or unset W2V_DOCKER_BASE")
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            pytest.skip(f"no base image {BASE}: docker/base-image.sh makes it, as root with debootstrap")
        made = subprocess.run(["bash", str(REPO_ROOT / "docker" / "base-image.sh"), BASE], capture_output=True,
                              text=True, timeout=1200, env={**os.environ, "DOCKER": docker_client})
        assert made.returncode == 0, f"docker/base-image.sh failed:\n{made.stdout}\n{made.stderr}"
    secret = ["--secret", f"id=ca,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    built = _docker(docker_client, "build", "--build-arg", f"BASE={BASE}", *secret, "-t", IMAGE, str(REPO_ROOT),
                    timeout=1800)
    assert built.returncode == 0, f"docker build failed:\n{built.stderr[-6000:]}"
    return IMAGE


def test_pipeline_runs_offline_with_results_on_the_host(docker_client: str, image: str, shakespeare: Path,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    ran = _docker(docker_client, "run", "--rm", "--network", "none", "--user", f"{os.getuid()}:{os.getgid()}",
                  "-v", f"{CORPUS_MIRROR}:/corpora:ro", "-e", "W2V_CORPUS_MIRROR=/corpora", "-v", f"{out}:/out",
                  image, "--set", "train.epochs=1")
    assert ran.returncode == 0, f"the pipeline failed in the container:\n{ran.stdout[-4000:]}\n{ran.stderr[-4000:]}"
    assert "results in /out" in ran.stdout

    vectors = (out / "exports" / "vectors.tsv").read_text().splitlines()
    words = (out / "exports" / "metadata.tsv").read_text().splitlines()
    assert len(vectors) == len(words) > 1000
    assert {len(row.split("\t")) for row in vectors} == {128}
    assert "epochs: 1" in (out / "params.yaml").read_text()
    assert (out / "metrics" / "evaluate.json").is_file()

    with sqlite3.connect(out / "mlflow.db") as store:
        runs = store.execute("SELECT status, artifact_uri FROM runs").fetchall()
    assert [status for status, _ in runs] == ["FINISHED"]
    artifacts = Path(runs[0][1].removeprefix("file://").replace("/out", str(out), 1))
    assert (artifacts / "embeddings" / "vectors.tsv").is_file() and (artifacts / "tensorboard").is_dir()

    assert any(path.is_file() for path in (out / "dvc-cache").rglob("*")), "DVC's cache in /out is empty"


def test_unwritable_output_folder_is_one_line(docker_client: str, image: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)  # writable by nobody but root: the image's own user cannot write there
    ran = _docker(docker_client, "run", "--rm", "--network", "none", "-v", f"{out}:/out", image, timeout=120)
    assert ran.returncode == 2
    assert ran.stderr.count("\n") == 1 and "/out is not writable by uid" in ran.stderr and "--user" in ran.stderr
