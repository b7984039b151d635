"""A tracking store that goes away does not stop `dvc repro`: export and evaluate write their files and
keep their tracking in the training run's outbox, and `python -m pipeline sync` later completes the run:
its exports, model version, scores and the champion alias, as an unbroken run has them."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_project_copy, mlflow_server, run, stop_server, tool_env


def test_dvc_repro_goes_to_the_end_without_the_store_and_sync_completes_the_run(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    project = make_project_copy(tmp_path / "project", {"train.epochs": 1})
    server, url = mlflow_server(tmp_path / "store")
    env = tool_env(MLFLOW_TRACKING_URI=url)
    try:
        run(["dvc", "repro", "train"], project, env)
    finally:
        stop_server(server)  # the store goes away between training and export

    result = run(["dvc", "repro"], project, env)  # export and evaluate, with no store
    assert "WARNING: the MLflow store failed" in result.stdout and "python -m pipeline sync" in result.stdout
    assert (project / "exports" / "word2vec.kv").is_file()
    scores = json.loads((project / "metrics" / "evaluate.json").read_text())
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project, env).stdout
    (outbox,) = (project / ".w2v" / "outbox").iterdir()
    assert [json.loads(line)[0] for line in (outbox / "requests.jsonl").read_text().splitlines()] == [
        "log_export", "log_evaluation"]

    server, _ = mlflow_server(tmp_path / "store", port=int(url.rsplit(":", 1)[1]))  # the store is back
    try:
        synced = run(["python", "-m", "pipeline", "sync"], project, env)
        assert "2 tracking requests sent" in synced.stdout
        client = MlflowClient(tracking_uri=url)
        (training,) = client.search_runs([client.get_experiment_by_name("word2vec").experiment_id])
        assert training.info.run_id == outbox.name and not outbox.exists()
        assert training.data.metrics["wordsim353_spearman"] == scores["wordsim353"]["spearman"]
        assert {item.path for item in client.list_artifacts(training.info.run_id, "embeddings")} >= {
            "embeddings/vectors.tsv", "embeddings/map.png"}
        assert client.get_model_version_by_alias("word2vec", "champion").run_id == training.info.run_id
    finally:
        stop_server(server)
