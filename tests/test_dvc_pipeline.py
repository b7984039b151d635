"""The pipeline through real DVC: repro from scratch, no-op repro, incremental repro, an experiment,
and a push/pull round trip through a local remote. Tracking lands in a real MLflow store."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from conftest import make_project_copy, run, tool_env

EPOCHS = 2


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dvc-remote")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, remote: Path) -> Path:
    """A fresh copy of the project after one `dvc repro` (Shakespeare, default params but epochs)."""
    root = make_project_copy(tmp_path_factory.mktemp("project"), {"train.epochs": EPOCHS}, remote=remote)
    run(["dvc", "repro"], root)
    return root


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def mlflow_client(project: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def runs_newest_first(project: Path, filter_string: str = "") -> list:
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("word2vec")
    return client.search_runs([experiment.experiment_id], filter_string, order_by=["attributes.start_time DESC"])


def first_run(project: Path):
    """The run of the fixture's `dvc repro`, whichever tests ran since."""
    return runs_newest_first(project)[-1]


def digest(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_repro_from_scratch_exports_the_projector_files(project: Path) -> None:
    vectors = (project / "exports" / "vectors.tsv").read_text().splitlines()
    metadata = (project / "exports" / "metadata.tsv").read_text().splitlines()
    assert len(vectors) == len(metadata) == 4095
    assert {len(line.split("\t")) for line in vectors} == {128}
    assert metadata[:3] == ["[UNK]", "the", "and"]
    assert (project / "exports" / "projector_config.pbtxt").is_file()
    metrics = yaml.safe_load((project / "metrics" / "train.json").read_text())
    assert set(metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    scores = yaml.safe_load((project / "metrics" / "evaluate.json").read_text())
    assert scores["wordsim353"]["coverage"] > 0 and scores["analogies"]["questions"] > 0


def test_mlflow_run_has_params_curves_artifacts_and_lineage(project: Path) -> None:
    run_info = first_run(project)
    client = mlflow_client(project)
    run_id = run_info.info.run_id
    assert run_info.info.status == "FINISHED"
    assert run_info.data.params["train.epochs"] == str(EPOCHS)
    assert run_info.data.params["vectorize.vocab_size"] == "4096"
    assert run_info.data.params["vectorize.sequence_length"] == "null"  # as params.yaml says it, not "None"
    assert run_info.data.params["effective_learning_rate"] == "0.03"
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(run_id, metric)
        assert sorted(point.step for point in history) == list(range(EPOCHS))
    assert {"wordsim353_spearman", "simlex999_spearman", "analogies_accuracy"} <= set(run_info.data.metrics)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert run_info.data.tags["dvc.download.md5"] == lock["download"]["outs"][0]["md5"]
    assert run_info.data.tags["dvc.examples.md5"] == lock["examples"]["outs"][0]["md5"]
    # The commit it started from, clean: what `dvc repro` itself writes (dvc.lock, metrics) doesn't count.
    head = run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    assert run_info.data.tags["git.commit"] == head
    assert run_info.data.tags["w2v.embedding_sha256"] == hashlib.sha256(
        (project / "models" / "w2v_embedding.npy").read_bytes()).hexdigest()
    artifacts = {item.path for item in client.list_artifacts(run_id)}
    assert artifacts == {"tensorboard", "embeddings", "evaluation"}
    embeddings = {item.path for item in client.list_artifacts(run_id, "embeddings")}
    assert embeddings == {f"embeddings/{name}" for name in ("vectors.tsv", "metadata.tsv", "projector_config.pbtxt",
                                                            "map.png", "map.html")}  # not word2vec.txt/.bin
    # word2vec.kv is kept once, as the served model's artifact
    (served,) = client.search_logged_models(experiment_ids=[run_info.info.experiment_id],
                                            filter_string=f"source_run_id = '{run_id}'")
    assert served.name == "pyfunc"
    assert [item.path for item in client.list_logged_model_artifacts(served.model_id, "artifacts")] == [
        "artifacts/word2vec.kv"]
    (version,) = client.search_model_versions(f"run_id = '{run_id}'")  # the embeddings as a registered model
    assert version.name == "word2vec"
    champion = client.get_model_version_by_alias("word2vec", "champion")  # the only one so far, so the best
    assert (champion.run_id, champion.version) == (run_id, version.version)


def test_second_repro_runs_nothing(project: Path) -> None:
    result = run(["dvc", "repro"], project)
    assert ran_stages(result.stdout) == []
    assert "didn't change, skipping" in result.stdout


def test_the_cluster_params_rerun_nothing(project: Path) -> None:
    """Outputs do not depend on where the shards run: `cluster.*` is no stage's param."""
    params_text = (project / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    params["cluster"].update(workers=1)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert ran_stages(run(["dvc", "repro"], project).stdout) == []
    finally:
        (project / "params.yaml").write_text(params_text)


def test_a_failed_stage_keeps_the_git_tracked_metrics(project: Path) -> None:
    params_text = (project / "params.yaml").read_text()
    metrics = {name: (project / "metrics" / name).read_bytes() for name in
               ("train.json", "train_history.csv", "evaluate.json", "neighbours.json")}
    embedding = digest(project / "models" / "w2v_embedding.npy")
    (project / "params.yaml").write_text(params_text.replace("batch_size: 1024", "batch_size: 100000000"))
    try:
        result = run(["dvc", "repro"], project, check=False)
        assert result.returncode != 0 and "lower train.batch_size" in result.stdout + result.stderr
        assert {name: (project / "metrics" / name).read_bytes() for name in metrics} == metrics
    finally:
        (project / "params.yaml").write_text(params_text)
    # DVC removed the stage's cached outputs before it ran; its cache gives them back as they were.
    run(["dvc", "checkout", "models"], project)
    assert digest(project / "models" / "w2v_embedding.npy") == embedding


def test_changing_epochs_reruns_train_export_and_evaluate_only(project: Path) -> None:
    result = run(["dvc", "exp", "run", "-S", f"train.epochs={EPOCHS + 1}"], project)
    assert ran_stages(result.stdout) == ["train", "export", "evaluate"]
    (newest,) = runs_newest_first(project, f"params.`train.epochs` = '{EPOCHS + 1}'")
    first = first_run(project)
    assert len(mlflow_client(project).get_metric_history(newest.info.run_id, "loss")) == EPOCHS + 1
    # One name: the MLflow run is the DVC experiment's; its params change is the experiment's, not dirt.
    assert newest.info.run_name == newest.data.tags["dvc.exp_name"]
    assert newest.data.tags["git.commit"] == run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    # Same corpus and examples, so the two runs are comparable side by side.
    assert newest.data.tags["dvc.examples.md5"] == first.data.tags["dvc.examples.md5"]
    # `dvc exp show` compares experiments by their scores, the same ones the MLflow run holds.
    import json

    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    experiments = [exp for entry in shown for exp in (entry.get("experiments") or [])]
    named = [exp for exp in experiments if exp.get("name") == newest.data.tags["dvc.exp_name"]]
    (experiment,) = named
    (revision,) = experiment["revs"]
    scores = revision["data"]["metrics"]["metrics/evaluate.json"]["data"]
    assert newest.data.metrics["wordsim353_spearman"] == pytest.approx(scores["wordsim353"]["spearman"])
    assert newest.data.metrics["analogies_accuracy"] == pytest.approx(scores["analogies"]["accuracy"])


def test_push_then_pull_in_another_clone_restores_every_artifact(project: Path, tmp_path: Path) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "pipeline results"], project)
    run(["dvc", "push"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "exports").exists()
    run(["dvc", "pull"], clone)
    outputs = ["data/corpus/shakespeare.txt", "data/vectorized/vocab.txt", "data/vectorized/shard-00000/tokens.npy",
               "data/examples/validation/shard-00000/outputs.npy", "models/w2v_embedding.npy",
               "models/context_embedding.npy", "exports/vectors.tsv", "exports/metadata.tsv"]
    for name in outputs:
        assert digest(clone / name) == digest(project / name), name
    status = run(["dvc", "status"], clone, tool_env())
    assert "up to date" in status.stdout


def test_make_run_in_a_fresh_clone_leaves_git_clean_and_tags_the_clean_commit(project: Path,
                                                                               tmp_path: Path) -> None:
    """Every output is reproducible (dvc.lock comes out byte-identical) and holds no run id or path."""
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-q", "-m", "pipeline results", "--allow-empty"], project)
    clone = tmp_path / "fresh"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    result = run(["python", "-m", "pipeline", "repro"], clone)
    assert "| train | ran |" in result.stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    (tracked,) = runs_newest_first(clone)
    assert tracked.data.tags["git.commit"] == run(["git", "rev-parse", "HEAD"], clone).stdout.strip()
    assert f"runs/{tracked.info.run_id}" in result.stdout  # the summary links to the MLflow run
    # DVC skipped evaluate (same embedding, same scores, already in git); the new run has them anyway.
    assert "| evaluate | up to date |" in result.stdout
    assert tracked.data.metrics["wordsim353_spearman"] == pytest.approx(yaml.safe_load(
        (clone / "metrics" / "evaluate.json").read_text())["wordsim353"]["spearman"])
    artifacts = {item.path for item in mlflow_client(clone).list_artifacts(tracked.info.run_id)}
    assert {"embeddings", "evaluation"} <= artifacts


def test_tracking_uri_override_logs_to_a_real_mlflow_server(project: Path, tmp_path: Path) -> None:
    """`MLFLOW_TRACKING_URI` sends the run to a tracking server instead of the embedded store."""
    import httpx

    from conftest import mlflow_server, stop_server

    server, url = mlflow_server(tmp_path / "server")
    try:
        env = tool_env(MLFLOW_TRACKING_URI=url)
        before = {name: digest(project / name) for name in ("models/w2v_embedding.npy", "exports/vectors.tsv")}
        for stage in ("train", "export"):
            run(["python", "-m", "pipeline", stage], project, env)
        # Same params and seed as the workspace's last training: the same embeddings, bit for bit.
        assert {name: digest(project / name) for name in before} == before
        experiments = httpx.get(f"{url}/api/2.0/mlflow/experiments/get-by-name",
                                params={"experiment_name": "word2vec"}).json()
        runs = httpx.post(f"{url}/api/2.0/mlflow/runs/search",
                          json={"experiment_ids": [experiments["experiment"]["experiment_id"]]}).json()["runs"]
        (tracked,) = runs
        run_id = tracked["info"]["run_id"]
        history = httpx.get(f"{url}/api/2.0/mlflow/metrics/get-history",
                            params={"run_id": run_id, "metric_key": "accuracy"}).json()["metrics"]
        epochs = yaml.safe_load((project / "params.yaml").read_text())["train"]["epochs"]
        assert sorted(int(point["step"]) for point in history) == list(range(epochs))
        files = httpx.get(f"{url}/api/2.0/mlflow/artifacts/list",
                          params={"run_id": run_id, "path": "embeddings"}).json()["files"]
        assert {item["path"] for item in files} >= {"embeddings/vectors.tsv", "embeddings/metadata.tsv"}
    finally:
        stop_server(server)


def test_a_queued_sweep_makes_one_mlflow_run_per_experiment_in_the_projects_store(project: Path) -> None:
    """Queued experiments run in copies under .dvc/tmp/exps/; their runs land in the project's own store."""
    import re
    import subprocess
    import time

    queued = run(["dvc", "exp", "run", "--queue", "-S", "train.epochs=1", "-S", "train.embedding_dim=8,16,32"],
                 project).stdout
    names = re.findall(r"Queued experiment '([^']+)'", queued)
    assert len(names) == 3
    # The workers it starts outlive it: give them no pipe of ours to hold open.
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=project, env=tool_env(), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=120)
    deadline = time.monotonic() + 600
    while re.search(r"\b(Queued|Running)\b", status := run(["dvc", "queue", "status"], project).stdout):
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") >= 3, status
    by_name = {tracked.info.run_name: tracked for tracked in runs_newest_first(project)}
    for name, dimension in zip(names, ("8", "16", "32"), strict=True):
        assert by_name[name].data.params["train.embedding_dim"] == dimension
        assert by_name[name].data.tags["dvc.exp_name"] == name
        assert by_name[name].info.status == "FINISHED"
        assert "wordsim353_spearman" in by_name[name].data.metrics  # evaluate found the run too
