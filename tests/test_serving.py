"""The embeddings as a registered MLflow model: versions, the champion alias, and `mlflow models serve`
answering over HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import VENV_BIN, start_server, stop_server, tool_env
from w2vpipe.vectors import KEYED_VECTORS_FILE, keyed_vectors, write_standard_files

WORDS = ["", "[UNK]", "king", "queen", "man", "woman", "sword", "night", "day", "love", "death", "father"]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the experiment's artifacts beside the store
    return uri


def trained_run(tmp_path: Path, seed: int, score: float) -> tuple[str, Path]:
    """A run holding a (random) embedding's exports, scored `score`, its model registered."""
    from pipeline import tracking

    exports = tmp_path / f"exports-{seed}"
    exports.mkdir()
    weights = np.random.default_rng(seed).normal(size=(len(WORDS), 8)).astype(np.float32)
    write_standard_files(exports, keyed_vectors(WORDS, weights))
    client = tracking.mlflow_client()
    run_id = client.create_run(tracking.experiment_id(client)).info.run_id
    client.log_metric(run_id, tracking.CHAMPION_METRIC, score)
    tracking.log_embeddings_model(run_id, exports / KEYED_VECTORS_FILE)
    tracking.update_champion(client, run_id)
    return run_id, exports


def test_the_best_scored_version_carries_the_champion_alias(store: str, tmp_path: Path) -> None:
    from pipeline import tracking

    client = tracking.mlflow_client()
    first, _ = trained_run(tmp_path, 1, score=0.30)
    worse, _ = trained_run(tmp_path, 2, score=0.20)
    champion = client.get_model_version_by_alias("word2vec", "champion")
    assert champion.run_id == first and str(champion.version) == "1"  # the later, worse version 2 did not take it
    assert {version.run_id for version in client.search_model_versions("name = 'word2vec'")} == {first, worse}
    better, _ = trained_run(tmp_path, 3, score=0.40)
    assert client.get_model_version_by_alias("word2vec", "champion").run_id == better


def test_the_served_champion_answers_neighbours_over_http(store: str, tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    run_id, exports = trained_run(tmp_path, 1, score=0.30)
    server, port = start_server(
        lambda port: [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/word2vec@champion",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        lambda port: f"http://127.0.0.1:{port}/ping", tool_env(MLFLOW_TRACKING_URI=store), tmp_path / "serve.log")
    try:
        url = f"http://127.0.0.1:{port}/invocations"
        answer = httpx.post(url, json={"inputs": ["king", "queen", "zyzzyva"]}, timeout=60).json()["predictions"]
        with_vectors = httpx.post(url, json={"inputs": ["king"], "params": {"top": 3, "vectors": True}},
                                  timeout=60).json()["predictions"]
    finally:
        stop_server(server)
    vectors = KeyedVectors.load(str(exports / KEYED_VECTORS_FILE))
    king, queen, unknown = answer
    assert king["word"] == "king" and king["known"] is True
    assert [(item["word"], pytest.approx(item["cosine"], abs=1e-6)) for item in king["neighbours"]] == \
        vectors.most_similar("king", topn=9)  # 10 asked, 9 other words in all
    assert queen["known"] is True and len(queen["neighbours"]) == 9
    assert unknown == {"word": "zyzzyva", "known": False, "neighbours": []}  # not an error
    (king_with_vector,) = with_vectors
    assert len(king_with_vector["neighbours"]) == 3
    assert king_with_vector["vector"] == pytest.approx(vectors["king"].tolist())
