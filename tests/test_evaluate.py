"""The evaluate stage on small trained models: gensim's scores with their coverage, probe words'
neighbours, a probe word outside the vocabulary; CBOW trains, is held out and evaluated too."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO_ROOT, tool_env


def stage(workdir: Path, name: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pipeline", name], cwd=workdir,
                            env=tool_env(PYTHONPATH=str(REPO_ROOT)), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module", params=["skipgram", "cbow"])
def trained(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """Shakespeare through train and evaluate, 3 epochs, with the project's default recipe."""
    root = tmp_path_factory.mktemp(request.param)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["train"].update(architecture=request.param, epochs=3)
    params["evaluate"]["probe_words"] = ["king", "Love", "zyzzyva"]
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    outputs = {name: stage(root, name) for name in ("download", "vectorize", "examples", "train", "evaluate")}
    return root, outputs


def test_scores_come_with_their_coverage(trained: tuple[Path, dict[str, str]]) -> None:
    root, outputs = trained
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert set(metrics) == {"wordsim353", "simlex999", "analogies"}
    for name in ("wordsim353", "simlex999"):
        assert 0 < metrics[name]["coverage"] < 1  # a 4096-word vocabulary of Shakespeare covers some pairs
        assert metrics[name]["pairs"] > 10
        assert -1 <= metrics[name]["spearman"] <= 1
    assert metrics["analogies"]["questions"] > 100 and 0 <= metrics["analogies"]["accuracy"] <= 1
    assert metrics["analogies"]["coverage"] == round(metrics["analogies"]["questions"] / 19544, 6)  # as written
    assert "wordsim353" in outputs["evaluate"] and "analogies" in outputs["evaluate"]


def test_probe_words_get_their_neighbours_and_a_missing_one_is_reported(trained: tuple[Path, dict[str, str]]) -> None:
    root, outputs = trained
    neighbours = json.loads((root / "metrics" / "neighbours.json").read_text())
    assert set(neighbours["neighbours"]) == {"king", "love"}  # probe words are lowercased, as the corpus is
    king = neighbours["neighbours"]["king"]
    assert len(king) == 10 and "king" not in [n["word"] for n in king]
    cosines = [n["cosine"] for n in king]
    assert cosines == sorted(cosines, reverse=True) and -1 <= cosines[-1] <= cosines[0] <= 1
    assert neighbours["missing"] == ["zyzzyva"]
    assert "not in the vocabulary: zyzzyva" in outputs["evaluate"]


def test_held_out_loss_is_scored_every_epoch(trained: tuple[Path, dict[str, str]]) -> None:
    root, _ = trained
    history = (root / "metrics" / "train_history.csv").read_text().splitlines()
    header = history[0].split(",")
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(header)
    assert len(history) == 1 + 3
    val_loss = [float(row.split(",")[header.index("val_loss")]) for row in history[1:]]
    assert val_loss[-1] < val_loss[0]  # it learns something that holds on lines it never saw
    stats = json.loads((root / "data" / "examples" / "stats.json").read_text())
    assert stats["validation_pairs"] > 0 and stats["architecture"] in ("skipgram", "cbow")


def test_evaluation_lands_in_the_training_runs_mlflow_record(trained: tuple[Path, dict[str, str]]) -> None:
    from mlflow import MlflowClient

    root, _ = trained
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    # The evaluate stage found the run by the hash of the embedding it scored, as the run is tagged.
    embedding_sha256 = hashlib.sha256((root / "models" / "w2v_embedding.npy").read_bytes()).hexdigest()
    (run,) = client.search_runs([client.get_experiment_by_name("word2vec").experiment_id])
    assert run.data.tags["w2v.embedding_sha256"] == embedding_sha256
    run_id = run.info.run_id
    metrics = json.loads((root / "metrics" / "evaluate.json").read_text())
    assert run.data.metrics["wordsim353_spearman"] == pytest.approx(metrics["wordsim353"]["spearman"])
    assert run.data.metrics["analogies_coverage"] == pytest.approx(metrics["analogies"]["coverage"])
    assert len(client.get_metric_history(run_id, "val_loss")) == 3
    artifacts = {artifact.path for artifact in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/neighbours.json", "evaluation/neighbours_table.json", "evaluation/evaluate.json"} <= artifacts


def test_a_vocabulary_that_covers_no_pair_scores_none_instead_of_failing() -> None:
    import numpy as np

    from w2vpipe.evaluation import evaluate_embeddings, flat_metrics

    # A corpus of another language (or of ids): no WordSim353, SimLex-999 or analogy word in its vocabulary.
    vocabulary = ["", "[UNK]", *(f"w{index}" for index in range(50))]
    weights = np.random.default_rng(0).normal(size=(len(vocabulary), 8)).astype(np.float32)
    evaluation = evaluate_embeddings(vocabulary, weights, ["w1", "king"], top=3)
    metrics = evaluation.metrics()
    for name in ("wordsim353", "simlex999"):
        assert metrics[name] == {"spearman": None, "pearson": None, "coverage": 0.0, "pairs": 0}
    assert metrics["analogies"]["accuracy"] is None and metrics["analogies"]["questions"] == 0
    assert set(flat_metrics(metrics)) == {"wordsim353_coverage", "wordsim353_pairs", "simlex999_coverage",
                                          "simlex999_pairs", "analogies_coverage", "analogies_questions"}
    assert "wordsim353 n/a" in evaluation.summary()
    assert [near.word for near in evaluation.neighbours["w1"]] and evaluation.missing_probes == ["king"]


def test_a_corpus_of_made_up_words_evaluates_to_null_scores(tmp_path: Path) -> None:
    """No English word in the vocabulary (any other language): the stage succeeds, each score is null with
    coverage 0 in DVC's metrics, the stage's output and the MLflow run."""
    import random

    from mlflow import MlflowClient

    rng = random.Random(0)
    words = ["".join(rng.choice("qxzvkj") + rng.choice("aeiouy") for _ in range(3)) for _ in range(600)]
    lines = (" ".join(rng.choices(words, weights=[1 / (rank + 1) for rank in range(600)], k=12)) for _ in range(3000))
    (tmp_path / "madeup.txt").write_text("\n".join(lines) + "\n")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["corpus"].update(url=str(tmp_path / "madeup.txt"), sha256=None)
    params["vectorize"]["vocab_size"] = 700
    params["train"].update(epochs=2, embedding_dim=16)
    params["evaluate"]["probe_words"] = [words[0]]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    outputs = {name: stage(tmp_path, name) for name in ("download", "vectorize", "examples", "train", "evaluate")}
    metrics = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    for name in ("wordsim353", "simlex999"):
        assert metrics[name] == {"spearman": None, "pearson": None, "coverage": 0.0, "pairs": 0}
    assert metrics["analogies"]["accuracy"] is None and metrics["analogies"]["coverage"] == 0
    assert "wordsim353, simlex999, analogies: none of its words are in the vocabulary" in outputs["evaluate"]
    assert "wordsim353 n/a (0% of pairs)" in outputs["evaluate"]
    assert json.loads((tmp_path / "metrics" / "neighbours.json").read_text())["neighbours"][words[0]]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("word2vec").experiment_id])
    assert run.data.metrics["wordsim353_coverage"] == 0 and "wordsim353_spearman" not in run.data.metrics
    assert run.data.metrics["analogies_questions"] == 0 and "analogies_accuracy" not in run.data.metrics
