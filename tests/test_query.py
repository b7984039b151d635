"""The embeddings in standard files (gensim writes and reads them) and the query command on them."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, tool_env
from pipeline import query as query_command
from w2vpipe import export as export_module
from w2vpipe.export import METADATA_FILE, PROJECTOR_CONFIG_FILE, VECTORS_FILE, write_text_files
from w2vpipe.vectors import (
    KEYED_VECTORS_FILE,
    WORD2VEC_BINARY_FILE,
    WORD2VEC_TEXT_FILE,
    keyed_vectors,
    write_standard_files,
)

WORDS = ["", "[UNK]", "king", "queen", "man", "woman", "sword", "night", "day", "love"]


@pytest.fixture
def exports(tmp_path: Path) -> Path:
    """The standard and text files of a random 10-token, 16-dimension embedding."""
    return write_exports(tmp_path / "exports", np.random.default_rng(0).normal(size=(len(WORDS), 16)).astype(np.float32))


def write_exports(out: Path, weights: np.ndarray, words: int | None = None) -> Path:
    out.mkdir()
    write_text_files(out, WORDS, weights, tensor_name="w2v_embedding", words=words)
    write_standard_files(out, keyed_vectors(WORDS, weights))
    return out


def query(*args: str, source: Path | str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", "query", "--from", str(source), *args],
                          env=tool_env(PYTHONPATH=str(REPO_ROOT), **env), capture_output=True, text=True, timeout=120)


def test_gensim_loads_both_word2vec_files_and_its_own(exports: Path) -> None:
    from gensim.models import KeyedVectors

    text = KeyedVectors.load_word2vec_format(str(exports / WORD2VEC_TEXT_FILE), binary=False)
    binary = KeyedVectors.load_word2vec_format(str(exports / WORD2VEC_BINARY_FILE), binary=True)
    own = KeyedVectors.load(str(exports / KEYED_VECTORS_FILE))
    assert text.index_to_key == binary.index_to_key == own.index_to_key == WORDS[2:]  # padding, [UNK] left out
    np.testing.assert_array_equal(binary.vectors, own.vectors)
    np.testing.assert_allclose(text.vectors, own.vectors, rtol=1e-6)  # text keeps 6 significant digits
    assert sorted(path.name for path in exports.iterdir()) == sorted(  # one file each, nothing beside
        [KEYED_VECTORS_FILE, WORD2VEC_BINARY_FILE, WORD2VEC_TEXT_FILE, VECTORS_FILE, METADATA_FILE,
         PROJECTOR_CONFIG_FILE])


def test_the_text_file_holds_the_most_frequent_words_and_the_binary_files_every_word(tmp_path: Path) -> None:
    from gensim.models import KeyedVectors

    weights = np.random.default_rng(0).normal(size=(len(WORDS), 16)).astype(np.float32)
    exports = write_exports(tmp_path / "exports", weights, words=3)
    text = KeyedVectors.load_word2vec_format(str(exports / WORD2VEC_TEXT_FILE), binary=False)
    binary = KeyedVectors.load_word2vec_format(str(exports / WORD2VEC_BINARY_FILE), binary=True)
    assert text.index_to_key == WORDS[2:5] and binary.index_to_key == WORDS[2:]
    np.testing.assert_allclose(text.vectors, weights[2:5], rtol=1e-6)
    assert KeyedVectors.load(str(exports / KEYED_VECTORS_FILE)).index_to_key == WORDS[2:]


def test_the_files_are_the_same_bytes_for_the_same_vectors(exports: Path, tmp_path: Path) -> None:
    weights = np.random.default_rng(0).normal(size=(len(WORDS), 16)).astype(np.float32)
    again = write_exports(tmp_path / "again", weights)
    for path in exports.iterdir():
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256((again / path.name).read_bytes()).digest()


def test_the_text_files_are_gensims_and_the_tutorials_bytes_when_formatted_by_worker_processes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gensim.models import KeyedVectors

    # Blocks of 7 rows on 3 worker processes: the large-table path on a small table.
    monkeypatch.setattr(export_module, "PARALLEL_VALUES", 100)
    monkeypatch.setattr(export_module, "BLOCK_ROWS", 7)
    words = ["", "[UNK]", *(f"w{index}" for index in range(50))]
    rng = np.random.default_rng(0)
    scales = rng.choice([1e-6, 1e-3, 1.0, 1e5, 1e9], size=(len(words), 1))  # positional and scientific forms
    weights = (rng.normal(size=(len(words), 16)) * scales).astype(np.float32)
    vectors = keyed_vectors(words, weights)
    write_text_files(tmp_path, words, weights, tensor_name="w2v_embedding", workers=3)
    gensims = tmp_path / "gensims.txt"
    vectors.save_word2vec_format(str(gensims), binary=False)
    assert (tmp_path / WORD2VEC_TEXT_FILE).read_bytes() == gensims.read_bytes()
    assert (tmp_path / VECTORS_FILE).read_text().splitlines() == ["\t".join(str(x) for x in row) for row in weights[1:]]
    assert KeyedVectors.load_word2vec_format(str(tmp_path / WORD2VEC_TEXT_FILE)).index_to_key == words[2:]


def test_the_text_files_hold_their_own_rows_when_unk_is_not_second(tmp_path: Path) -> None:
    # One pass formats the rows of both files: here the Projector's are 1-3, word2vec.txt's 1, 3 and 4.
    words = ["", "king", "[UNK]", "queen", "man"]
    weights = np.random.default_rng(0).normal(size=(len(words), 4)).astype(np.float32)
    write_text_files(tmp_path, words, weights, tensor_name="w2v_embedding", words=3)
    gensims = tmp_path / "gensims.txt"
    keyed = keyed_vectors(words, weights)
    keyed.save_word2vec_format(str(gensims), binary=False)  # all three of its words
    assert (tmp_path / WORD2VEC_TEXT_FILE).read_bytes() == gensims.read_bytes()
    assert (tmp_path / VECTORS_FILE).read_text().splitlines() == ["\t".join(str(x) for x in row) for row in weights[1:4]]
    assert (tmp_path / METADATA_FILE).read_text().splitlines() == ["king", "[UNK]", "queen"]


def test_query_neighbours_equals_gensims_most_similar(exports: Path) -> None:
    from gensim.models import KeyedVectors

    result = query("--json", "neighbours", "king", "--top", "5", source=exports)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    expected = KeyedVectors.load_word2vec_format(str(exports / WORD2VEC_BINARY_FILE), binary=True).most_similar(
        "king", topn=5)
    assert [(item["word"], pytest.approx(item["cosine"], abs=1e-6)) for item in answer["neighbours"]] == expected
    shown = query("neighbours", "king", "--top", "5", source=exports).stdout.splitlines()
    assert shown[0] == "nearest to king" and shown[1].split()[1] == expected[0][0] and len(shown) == 6


def test_query_analogy_and_similarity(exports: Path) -> None:
    from gensim.models import KeyedVectors

    vectors = KeyedVectors.load(str(exports / KEYED_VECTORS_FILE))
    analogy = json.loads(query("--json", "analogy", "man", "king", "woman", source=exports).stdout)
    expected = vectors.most_similar(positive=["king", "woman"], negative=["man"], topn=10)
    assert [item["word"] for item in analogy["answers"]] == [word for word, _ in expected]
    assert not {"man", "king", "woman"} & {item["word"] for item in analogy["answers"]}
    similarity = json.loads(query("--json", "similarity", "king", "queen", source=exports).stdout)
    assert similarity["cosine"] == pytest.approx(float(vectors.similarity("king", "queen")), abs=1e-6)


def test_an_unknown_word_gets_one_line_with_the_closest_spellings(exports: Path) -> None:
    result = query("neighbours", "kinng", source=exports)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == ("error: 'kinng' is not in the vocabulary of 8 words "
                                     "(closest by spelling: king)")
    assert "'zzz' is not in the vocabulary" in query("similarity", "king", "zzz", source=exports).stderr
    missing = query("neighbours", "king", source=exports.parent / "nowhere")
    assert missing.returncode == 2 and "run the export stage first" in missing.stderr


def test_query_reads_a_runs_served_model(exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from pipeline import tracking

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.create_experiment("word2vec", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = client.create_run(experiment).info.run_id
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    tracking.log_embeddings_model(run_id, exports / "word2vec.kv")  # as the export stage logs it: word2vec.kv once
    run_source = f"runs:/{run_id}"
    from_run = json.loads(query("--json", "neighbours", "queen", source=run_source, MLFLOW_TRACKING_URI=store).stdout)
    from_files = json.loads(query("--json", "neighbours", "queen", source=exports).stdout)
    assert from_run == from_files
    empty = client.create_run(experiment).info.run_id
    result = query("neighbours", "queen", source=f"runs:/{empty}", MLFLOW_TRACKING_URI=store)
    assert result.returncode == 2 and f"runs:/{empty} has no word2vec.kv" in result.stderr


def parse(*argv: str) -> argparse.Namespace:
    """`python -m pipeline query ARGV` as the CLI's parser reads it."""
    parser = argparse.ArgumentParser()
    query_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["query", *argv])


@pytest.mark.parametrize("argv", [
    ["--json", "--from", "run.kv", "neighbours", "king", "--top", "3"],
    ["neighbours", "king", "--top", "3", "--json", "--from", "run.kv"],
    ["--json", "neighbours", "--from", "run.kv", "king", "--top", "3"],
    ["--from", "exports", "neighbours", "--top", "3", "king", "--from", "run.kv", "--json"],  # the last --from wins
])
def test_query_options_work_before_and_after_the_question(argv: list[str]) -> None:
    args = parse(*argv)
    assert (args.question, args.word, args.top, args.source, args.json) == ("neighbours", "king", 3, "run.kv", True)


def test_query_options_left_out_take_their_defaults_wherever_the_others_are() -> None:
    plain = parse("similarity", "king", "queen")
    assert (plain.source, plain.json) == ("exports", False)
    assert parse("--json", "similarity", "king", "queen").source == "exports"
    assert parse("analogy", "man", "king", "woman", "--from", "x.kv").json is False


def test_query_json_after_the_word_answers_as_before_it(exports: Path) -> None:
    """The README's `python -m pipeline query neighbours king --json`, end to end."""
    after = subprocess.run([sys.executable, "-m", "pipeline", "query", "neighbours", "king", "--json", "--from",
                            str(exports)], env=tool_env(PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True,
                           timeout=120)
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout) == json.loads(query("--json", "neighbours", "king", source=exports).stdout)


def test_query_errors_under_json_are_one_json_object_on_stdout(exports: Path) -> None:
    misspelt = query("analogy", "man", "kinng", "womn", "--json", source=exports)
    assert misspelt.returncode == 2 and misspelt.stderr == ""
    error = json.loads(misspelt.stdout)  # one object: json.loads refuses anything after it
    assert error["word"] == "kinng" and error["closest"] == ["king"]
    assert error["error"] == "'kinng' is not in the vocabulary of 8 words (closest by spelling: king)"
    several = json.loads(query("--json", "similarity", "king", "mann", source=exports).stdout)
    assert several["closest"] == ["man", "woman"] and several["error"].endswith("(closest by spelling: man, woman)")
    missing = query("--json", "neighbours", "king", source=exports.parent / "nowhere")
    assert missing.returncode == 2 and missing.stderr == ""
    assert json.loads(missing.stdout) == {"error": f"{exports.parent / 'nowhere'} not found: run the export stage "
                                                   "first (dvc repro export)"}


def test_the_vectors_share_the_embeddings_memory_and_are_saved_from_it(tmp_path: Path) -> None:
    """The export stage holds the table once: the KeyedVectors view the embedding (padding and [UNK] come
    first), and the .kv file is pickled with protocol 5, which writes the table without copying it."""
    from gensim.models import KeyedVectors

    weights = np.random.default_rng(0).normal(size=(len(WORDS), 16)).astype(np.float32)
    vectors = keyed_vectors(WORDS, weights)
    assert np.shares_memory(vectors.vectors, weights)
    write_standard_files(tmp_path, vectors)
    assert (tmp_path / KEYED_VECTORS_FILE).read_bytes()[:2] == b"\x80\x05"  # pickle protocol 5
    np.testing.assert_array_equal(KeyedVectors.load(str(tmp_path / KEYED_VECTORS_FILE)).vectors, weights[2:])
    # [UNK] inside the vocabulary: the kept rows are not one run, so they are gathered into a table of their own
    scattered = keyed_vectors(["king", "[UNK]", "queen"], weights[:3])
    assert scattered.index_to_key == ["king", "queen"] and not np.shares_memory(scattered.vectors, weights)
    np.testing.assert_array_equal(scattered.vectors, weights[[0, 2]])
