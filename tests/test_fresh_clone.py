"""`dvc repro` on a fresh clone, on another BLAS kernel and thread count, tells the whole truth: the
committed dvc.lock and metrics come out unchanged, the new MLflow run has its scores, and the champion
is served. Then a retraining that reproduces its embedding gives its new run what DVC does not redo."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conftest import VENV_BIN, make_project_copy, run, start_server, stop_server, tool_env

# Another CPU's arithmetic: OpenBLAS's generic SSE3 kernels instead of this CPU's own, on one thread, and
# XLA's training code compiled for AVX2 (a CPU without AVX-512), not loaded from this machine's compile cache.
OTHER_MACHINE = {"OPENBLAS_CORETYPE": "Prescott", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
                 "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose results are committed, and a clone of it after its own `dvc repro`."""
    origin = make_project_copy(tmp_path_factory.mktemp("origin"), {"train.epochs": 2})
    run(["dvc", "repro"], origin)
    run(["git", "add", "-A"], origin)
    run(["git", "commit", "-q", "-m", "results"], origin)
    clone = tmp_path_factory.mktemp("clone") / "project"
    run(["git", "clone", "-q", str(origin), str(clone)], origin)
    compile_cache = tmp_path_factory.mktemp("compile-cache")
    run(["dvc", "repro"], clone, tool_env(**OTHER_MACHINE, W2V_COMPILE_CACHE=str(compile_cache)))
    return clone


def mlflow_client(project: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def newest_run(project: Path):
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("word2vec")
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"])[0]


def test_a_fresh_clone_reproduces_the_committed_results_byte_for_byte(clone: Path) -> None:
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    assert (clone / "exports" / "map.png").is_file()  # drawn, though DVC does not hash it


def test_the_clones_run_has_its_scores_and_its_model_is_the_champion(clone: Path) -> None:
    scores = json.loads((clone / "metrics" / "evaluate.json").read_text())
    latest = newest_run(clone)
    # DVC skipped evaluate (its inputs are the committed ones), and the training's run got its scores anyway.
    assert latest.data.metrics["wordsim353_spearman"] == pytest.approx(scores["wordsim353"]["spearman"])
    assert latest.data.metrics["analogies_accuracy"] == pytest.approx(scores["analogies"]["accuracy"])
    champion = mlflow_client(clone).get_model_version_by_alias("word2vec", "champion")
    assert champion.run_id == latest.info.run_id


def test_the_clones_champion_is_served(clone: Path, tmp_path: Path) -> None:
    store = f"sqlite:///{clone / 'mlflow.db'}"
    server, port = start_server(
        lambda port: [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/word2vec@champion",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        lambda port: f"http://127.0.0.1:{port}/ping", tool_env(MLFLOW_TRACKING_URI=store), tmp_path / "serve.log")
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": ["king"]}, timeout=60).json()
    finally:
        stop_server(server)
    (king,) = answer["predictions"]
    neighbours = json.loads((clone / "metrics" / "neighbours.json").read_text())["neighbours"]["king"]
    assert [item["word"] for item in king["neighbours"]] == [item["word"] for item in neighbours]


def test_a_retraining_with_the_same_numbers_gives_its_run_the_exports_and_scores(clone: Path) -> None:
    before = newest_run(clone).info.run_id
    run(["dvc", "repro", "--force", "--single-item", "train"], clone)
    output = run(["dvc", "repro"], clone).stdout
    assert "Stage 'export' didn't change" in output and "Stage 'evaluate' didn't change" in output
    latest = newest_run(clone)
    assert latest.info.run_id != before
    assert "wordsim353_spearman" in latest.data.metrics
    client = mlflow_client(clone)
    assert {item.path for item in client.list_artifacts(latest.info.run_id, "embeddings")} >= {
        "embeddings/map.png", "embeddings/vectors.tsv"}
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
