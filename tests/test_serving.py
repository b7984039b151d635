"""The embeddings as a registered MLflow model: versions, the champion alias, and `mlflow models serve`
answering over HTTP on 127.0.0.1: gensim's neighbours, within bounds that any request must keep."""

from __future__ import annotations

import time
import types
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from gensim.models import KeyedVectors

from conftest import VENV_BIN, start_server, stop_server, tool_env
from w2vpipe.vectors import KEYED_VECTORS_FILE, keyed_vectors, write_standard_files

WORDS = ["", "[UNK]", "king", "queen", "man", "woman", "sword", "night", "day", "love", "death", "father"]
# The served model's vocabulary: the default run's size and dimension (vectorize.vocab_size, train.embedding_dim).
VOCABULARY = WORDS + [f"w{number}" for number in range(4096 - len(WORDS))]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # the experiment's artifacts beside the store
    return uri


def trained_run(tmp_path: Path, seed: int, score: float, words: list[str] = WORDS, dim: int = 8) -> tuple[str, Path]:
    """A run holding a (random) embedding's exports, scored `score`, its model registered."""
    from pipeline import tracking

    exports = tmp_path / f"exports-{seed}"
    exports.mkdir()
    weights = np.random.default_rng(seed).normal(size=(len(words), dim)).astype(np.float32)
    write_standard_files(exports, keyed_vectors(words, weights))
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


def assert_gensims_neighbours(answer: list[dict], vectors: KeyedVectors, word: str, top: int) -> None:
    """`answer` is gensim's most_similar(word, topn=top): the same cosines in the same order, and the same
    words, but for neighbours whose cosines tie to within float32 rounding (one matrix product and gensim's
    one vector product add in different orders), which may come in either order."""
    expected = vectors.most_similar(word, topn=top)
    assert [item["cosine"] for item in answer] == pytest.approx([cosine for _, cosine in expected], abs=1e-6)
    assert all(first["cosine"] >= second["cosine"] for first, second in zip(answer, answer[1:]))
    gensims = dict(vectors.most_similar(word, topn=top + 5))
    for item in answer:
        assert gensims.get(item["word"]) == pytest.approx(item["cosine"], abs=1e-6), (word, item)


def in_process_model(vectors: KeyedVectors, tmp_path: Path):  # noqa: ANN201 (the model file is loaded by MLflow)
    from pipeline.serving_model import EmbeddingsModel

    tmp_path.mkdir(exist_ok=True)
    vectors.save(str(tmp_path / "vectors.kv"))
    model = EmbeddingsModel()
    model.load_context(types.SimpleNamespace(artifacts={"keyed_vectors": str(tmp_path / "vectors.kv")}))
    return model


def test_neighbours_are_gensims_most_similar(tmp_path: Path) -> None:
    vectors = keyed_vectors([f"w{number}" for number in range(2000)],
                            np.random.default_rng(5).normal(size=(2000, 32)).astype(np.float32))
    model = in_process_model(vectors, tmp_path)
    for answer in model.predict(None, vectors.index_to_key, {"top": 20}):
        assert answer["known"] and len(answer["neighbours"]) == 20
        assert_gensims_neighbours(answer["neighbours"], vectors, answer["word"], 20)
    # A top above the vocabulary gets every other word, as gensim's does; a zero vector gets cosines 0, not
    # gensim's NaN, which JSON cannot carry.
    small = keyed_vectors(WORDS, np.random.default_rng(1).normal(size=(len(WORDS), 8)).astype(np.float32))
    (king,) = in_process_model(small, tmp_path / "small").predict(None, ["king"], {"top": 100})
    assert_gensims_neighbours(king["neighbours"], small, "king", 100)
    assert len(king["neighbours"]) == len(small) - 1 == len(WORDS) - 3  # padding and [UNK] are no words
    small.vectors[small.key_to_index["day"]] = 0
    (day,) = in_process_model(small, tmp_path / "zero").predict(None, ["day"], {"top": 100})
    assert {item["cosine"] for item in day["neighbours"]} == {0.0}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, KeyedVectors]]:
    """`mlflow models serve` of the champion, a 4,096-word model of dimension 128: its URL and vectors."""
    tmp_path = tmp_path_factory.mktemp("served")
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)
        patch.setenv("DVC_ROOT", str(tmp_path))
        _, exports = trained_run(tmp_path, 1, score=0.30, words=VOCABULARY, dim=128)
    server, port = start_server(
        lambda port: [str(VENV_BIN / "mlflow"), "models", "serve", "-m", "models:/word2vec@champion",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        lambda port: f"http://127.0.0.1:{port}/ping", tool_env(MLFLOW_TRACKING_URI=store), tmp_path / "serve.log")
    yield f"http://127.0.0.1:{port}/invocations", KeyedVectors.load(str(exports / KEYED_VECTORS_FILE))
    stop_server(server)


def test_the_served_champion_answers_neighbours_over_http(served: tuple[str, KeyedVectors]) -> None:
    url, vectors = served
    answer = httpx.post(url, json={"inputs": ["king", "queen", "zyzzyva"]}, timeout=60).json()["predictions"]
    with_vectors = httpx.post(url, json={"inputs": ["king"], "params": {"top": 3, "vectors": True}},
                              timeout=60).json()["predictions"]
    king, queen, unknown = answer
    assert king["word"] == "king" and king["known"] is True and len(king["neighbours"]) == 10
    assert_gensims_neighbours(king["neighbours"], vectors, "king", 10)
    assert queen["known"] is True and len(queen["neighbours"]) == 10
    assert unknown == {"word": "zyzzyva", "known": False, "neighbours": []}  # not an error
    (king_with_vector,) = with_vectors
    assert len(king_with_vector["neighbours"]) == 3
    assert king_with_vector["vector"] == pytest.approx(vectors["king"].tolist())


@pytest.mark.parametrize(("inputs", "params", "message"), [
    (VOCABULARY[:2000], {"top": 10**9}, "top=1000000000 is out of range: ask for 1 to 1,000 neighbours per word"),
    (["king"], {"top": 0}, "top=0 is out of range"),
    (["king"] * 100_001, {}, "100,001 words in one request: send at most 100,000 per request"),
    (["king", "k" * 101], {}, f"a word of 101 characters ('{'k' * 20}'…): words have at most 100 characters"),
    (VOCABULARY[:2000], {"top": 1000}, "2,000 words x 1,000 numbers each (top) is over 1,000,000 per request: send "
                                       "fewer words, a smaller top"),
    (VOCABULARY * 2, {"vectors": True}, "8,192 words x 138 numbers each (top and vectors) is over 1,000,000 per "
                                        "request: send fewer words, a smaller top or vectors: false"),
], ids=["top-1e9", "top-0", "too-many-words", "long-word", "too-many-neighbours", "too-many-vector-numbers"])
def test_requests_beyond_the_bounds_get_400_and_one_line_at_once(served: tuple[str, KeyedVectors], inputs: list[str],
                                                                  params: dict, message: str) -> None:
    url, _ = served
    started = time.monotonic()
    response = httpx.post(url, json={"inputs": inputs, "params": params}, timeout=60)
    seconds = time.monotonic() - started
    assert response.status_code == 400
    error = response.json()
    print(f"{len(inputs):,} words, params {params}: HTTP 400 in {seconds:.2f} s: {error['message'][-160:]!r}")
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    # MLflow's scoring server puts its own lines first ("Failed to predict data ..."): ours is the last.
    assert message in error["message"].splitlines()[-1]
    assert seconds < 10, seconds


def test_fifty_thousand_words_answer_in_seconds(served: tuple[str, KeyedVectors]) -> None:
    url, vectors = served
    words = [VOCABULARY[index] for index in np.random.default_rng(3).integers(0, len(VOCABULARY), 50_000)]
    words[::1000] = ["zyzzyva"] * 50  # some words outside the vocabulary among them (as padding and [UNK] are)
    started = time.monotonic()
    response = httpx.post(url, json={"inputs": words}, timeout=120)
    seconds = time.monotonic() - started
    print(f"50,000 words: HTTP {response.status_code}, {len(response.content):,} bytes in {seconds:.2f} s")
    assert response.status_code == 200
    answers = response.json()["predictions"]
    assert [answer["word"] for answer in answers] == words
    assert sum(not answer["known"] for answer in answers) == sum(word not in vectors for word in words)
    for answer in [answer for answer in answers[1::4999] if answer["known"]]:
        assert_gensims_neighbours(answer["neighbours"], vectors, answer["word"], 10)
    assert seconds < 30, seconds
