"""Bad input fails fast, in one line naming the problem and the fix, and leaves no artifact."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from conftest import REPO_ROOT, mlflow_server, refused_port, stop_server, tool_env


def stage(workdir: Path, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m pipeline NAME` (a stage, or another command) in `workdir`."""
    return subprocess.run([sys.executable, "-m", "pipeline", name], cwd=workdir,
                          env=tool_env(**{"PYTHONPATH": str(REPO_ROOT), **env}), capture_output=True, text=True,
                          timeout=300)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # Exactly one line: TensorFlow's start-up noise (absl's CUDA probe...) is filtered too.
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def set_params(workdir: Path, **values: object) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for key, value in values.items():
        section, _, name = key.partition("__")
        params[section][name] = value
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


@pytest.mark.parametrize(
    ("name", "missing"),
    [("vectorize", "data/corpus/shakespeare.txt"), ("examples", "data/vectorized/counts.npy"),
     ("train", "data/vectorized/counts.npy"), ("export", "data/vectorized/vocab.txt")],
)
def test_stage_before_its_inputs_says_which_stage_to_run(workdir: Path, name: str, missing: str) -> None:
    line = one_line_error(stage(workdir, name))
    assert f"{missing} not found: run the" in line and "dvc repro" in line
    assert not (workdir / "data").exists() or not any((workdir / "data").rglob("*.*"))
    assert not (workdir / "models").exists() and not (workdir / "exports").exists()


def test_out_of_range_param_stops_the_first_stage(workdir: Path) -> None:
    set_params(workdir, train__epochs=0)
    line = one_line_error(stage(workdir, "download"))
    assert "train.epochs=0 is invalid: it must be at least 1" in line
    assert not (workdir / "data").exists()


def test_checksum_mismatch_leaves_no_corpus(workdir: Path) -> None:
    set_params(workdir, corpus__sha256="f" * 64)
    line = one_line_error(stage(workdir, "download"))
    assert "checksum mismatch" in line
    assert not list(workdir.glob("data/**/*.txt"))


def test_num_ns_beyond_the_corpus_vocabulary_fails_before_sampling(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("a b c\nb c a\n")
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None, examples__num_ns=6)
    assert stage(workdir, "download").returncode == 0
    assert stage(workdir, "vectorize").returncode == 0
    line = one_line_error(stage(workdir, "examples"))
    assert "examples.num_ns=6 needs a larger vocabulary than the corpus gave (5 tokens)" in line
    assert not (workdir / "data" / "examples").exists()


def test_unreachable_dask_scheduler_fails_in_one_line_and_leaves_no_output(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("a b c\nb c a\n")
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None)
    assert stage(workdir, "download").returncode == 0
    with refused_port() as port:
        started = time.monotonic()
        result = stage(workdir, "vectorize", W2V_DASK_SCHEDULER=f"tcp://127.0.0.1:{port}")
        seconds = time.monotonic() - started
    line = one_line_error(result)
    assert f"no Dask scheduler answers at tcp://127.0.0.1:{port} within 5 s" in line and "W2V_DASK_SCHEDULER" in line
    assert seconds < 15, seconds
    assert not (workdir / "data" / "vectorized").exists()


def test_a_workers_pipeline_error_reaches_the_stage_as_itself(tmp_path: Path, dask_scheduler: str) -> None:
    """A task that fails on a worker (here: its shard is not what the scan found) raises the same one-line
    PipelineError in the stage, which prints it as its one line."""
    from distributed import Client

    from pipeline.cluster import run_tasks
    from w2vpipe.corpus_shards import ShardRange, read_shard_lines
    from w2vpipe.errors import PipelineError

    (tmp_path / "tiny.txt").write_text("a b c\nb c a\n")
    with Client(dask_scheduler) as client, pytest.raises(PipelineError, match="changed while it was being vectorized"):
        run_tasks(client, read_shard_lines, [tmp_path / "tiny.txt"], shard=ShardRange(0, 0, 12, 0, lines=3))


def test_too_few_pairs_for_a_batch_fails_before_training(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None, examples__subsample=False)
    for name in ("download", "vectorize", "examples"):
        assert stage(workdir, name).returncode == 0
    line = one_line_error(stage(workdir, "train"))
    assert "fewer than train.batch_size=1024: lower train.batch_size" in line
    assert not (workdir / "models").exists()


def test_unreachable_tracking_server_fails_before_training(workdir: Path) -> None:
    (workdir / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 20)
    set_params(workdir, corpus__url=str(workdir / "tiny.txt"), corpus__sha256=None, examples__subsample=False,
               train__batch_size=16)
    for name in ("download", "vectorize", "examples"):
        assert stage(workdir, name).returncode == 0
    # MLflow's client alone retries for minutes (259 s measured); the stage asks once, in seconds.
    with refused_port() as port:
        started = time.monotonic()
        result = stage(workdir, "train", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}")
        seconds = time.monotonic() - started
    line = one_line_error(result)
    assert seconds < 15, seconds
    assert "MLflow tracking server http://127.0.0.1:" in line and "does not answer" in line
    assert "unset MLFLOW_TRACKING_URI" in line
    assert "Epoch 1/" not in result.stdout  # it stopped before training
    assert not (workdir / "models").exists()


@pytest.fixture(scope="module")
def examples_made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny corpus through download, vectorize and examples: sound shards to damage."""
    root = tmp_path_factory.mktemp("examples-made")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / "tiny.txt").write_text("the quick brown fox jumps over the lazy dog\n" * 40)
    set_params(root, corpus__url=str(root / "tiny.txt"), corpus__sha256=None, examples__subsample=False,
               train__batch_size=16, vectorize__validation_fraction=0.0)
    for name in ("download", "vectorize", "examples"):
        assert stage(root, name).returncode == 0
    return root


@pytest.fixture(scope="module")
def stored_examples_made(examples_made: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same, with the training pairs stored (examples.redraw_each_epoch: false): every epoch trains on them."""
    root = tmp_path_factory.mktemp("stored-examples-made")
    shutil.copytree(examples_made, root, dirs_exist_ok=True)
    set_params(root, examples__redraw_each_epoch=False)
    assert stage(root, "examples").returncode == 0
    return root


def half_ids_out_of_range(path: Path) -> None:
    array = np.load(path)
    array[: len(array) // 2] = 10**6
    np.save(path, array)


def first_half_only(path: Path) -> None:
    array = np.load(path)
    np.save(path, array[: len(array) // 2])


def cut_mid_file(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "message"), [
    (half_ids_out_of_range, "holds ids outside the vocabulary of"),
    (first_half_only, "input rows but"),
    (cut_mid_file, "is missing or damaged"),
])
def test_damaged_example_shards_stop_training_before_tensorflow_loads(
        stored_examples_made: Path, tmp_path: Path, damage: Any, message: str) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(stored_examples_made, workdir)
    damage(workdir / "data" / "examples" / "shard-00000" / "outputs.npy")
    # A tensorflow that cannot be imported: the check must come first.
    (tmp_path / "no-tf" / "tensorflow").mkdir(parents=True)
    (tmp_path / "no-tf" / "tensorflow" / "__init__.py").write_text("raise ImportError('TensorFlow was loaded')\n")
    result = stage(workdir, "train", PYTHONPATH=f"{tmp_path / 'no-tf'}{os.pathsep}{REPO_ROOT}")
    line = one_line_error(result)
    assert "data/examples/shard-00000" in line and message in line and "dvc repro -f examples" in line
    assert "Epoch" not in result.stdout and not (workdir / "mlflow.db").exists()  # no training, no run


def test_a_shard_missing_from_the_count_is_caught(stored_examples_made: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(stored_examples_made, workdir)
    stats_file = workdir / "data" / "examples" / "stats.json"
    stats = json.loads(stats_file.read_text())
    stats_file.write_text(json.dumps({**stats, "pairs": stats["pairs"] + 7}))
    line = one_line_error(stage(workdir, "train"))
    assert "examples but its stats.json counts" in line


def test_a_vocabulary_that_does_not_match_the_embedding_stops_export(examples_made: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    vocabulary = (workdir / "data" / "vectorized" / "vocab.txt").read_text().splitlines(keepends=True)
    (workdir / "models").mkdir()
    np.save(workdir / "models" / "w2v_embedding.npy", np.zeros((len(vocabulary), 8), np.float32))
    (workdir / "data" / "vectorized" / "vocab.txt").write_text("".join(vocabulary[:5]))
    line = one_line_error(stage(workdir, "export"))
    assert f"has {len(vocabulary)} rows but data/vectorized/vocab.txt has 5 tokens" in line
    assert not (workdir / "exports").exists()


def start_training(workdir: Path, until_line: str, **env: str) -> tuple[subprocess.Popen[str], list[str]]:
    """`python -m pipeline train`, returned once it printed a line starting with `until_line`."""
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "train"], cwd=workdir, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env=tool_env(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", **env))
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(until_line):
            return process, lines
    raise AssertionError(f"training ended before {until_line!r} ({process.wait()}):\n{''.join(lines)[-3000:]}")


def runs(store: str) -> list[Any]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    return client.search_runs([client.get_experiment_by_name("word2vec").experiment_id],
                              order_by=["attributes.start_time ASC"])


def loss_steps(store: str, run_id: str) -> list[int]:
    from mlflow import MlflowClient

    return sorted(point.step for point in MlflowClient(tracking_uri=store).get_metric_history(run_id, "loss"))


def copy_project(examples_made: Path, destination: Path, epochs: int) -> Path:
    shutil.copytree(examples_made, destination)
    set_params(destination, train__epochs=epochs)
    return destination


def test_a_training_killed_with_kill_9_resumes_into_the_same_run(examples_made: Path, tmp_path: Path) -> None:
    epochs = 60
    unbroken = copy_project(examples_made, tmp_path / "unbroken", epochs)
    assert stage(unbroken, "train").returncode == 0
    workdir = copy_project(examples_made, tmp_path / "project", epochs)
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    killed, _ = start_training(workdir, "Epoch 20/")
    killed.kill()  # kill -9: no cleanup runs
    killed.wait(timeout=60)
    (checkpoint,) = (workdir / ".w2v" / "checkpoints").iterdir()
    finished = len(json.loads((checkpoint / "history.json").read_text()))
    (before,) = runs(store)
    assert before.info.status == "RUNNING" and 19 <= finished < epochs

    result = stage(workdir, "train")
    assert result.returncode == 0, result.stdout + result.stderr
    (after,) = runs(store)  # the same run, continued
    resumed_at = int(after.data.tags["w2v.resumed_at_epoch"])
    assert after.info.run_id == before.info.run_id and after.info.status == "FINISHED"
    assert f"resumed after epoch {resumed_at}" in result.stdout and finished - 1 <= resumed_at <= finished
    assert f"Epoch {resumed_at + 1}/{epochs}" in result.stdout and f"Epoch {resumed_at}/{epochs}" not in result.stdout
    assert loss_steps(store, after.info.run_id) == list(range(epochs))  # each epoch logged once
    assert len((workdir / "metrics" / "train_history.csv").read_text().splitlines()) == 1 + epochs
    # Same data order and draws as an unbroken training: the same embedding, bit for bit.
    for name in ("models/w2v_embedding.npy", "metrics/train_history.csv"):
        assert (workdir / name).read_bytes() == (unbroken / name).read_bytes(), name
    assert not list((workdir / ".w2v" / "checkpoints").iterdir()) and not list(workdir.glob(".models.*.tmp"))


def test_killed_trainings_of_other_params_leave_no_running_run_and_no_leftovers(examples_made: Path,
                                                                               tmp_path: Path) -> None:
    workdir = copy_project(examples_made, tmp_path / "project", 500)
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    checkpoints = workdir / ".w2v" / "checkpoints"
    stopped, _ = start_training(workdir, "Epoch 3/")
    stopped.terminate()  # SIGTERM: unwinds, the run ends KILLED at once; its checkpoint stays for a rerun
    assert stopped.wait(timeout=120) == 128 + 15
    assert [run.info.status for run in runs(store)] == ["KILLED"] and len(list(checkpoints.iterdir())) == 1
    set_params(workdir, train__epochs=400)  # another training: it does not resume the first
    killed, _ = start_training(workdir, "Epoch 3/")
    killed.kill()  # kill -9: the run stays RUNNING, the temporary model folder stays
    killed.wait(timeout=60)
    assert [run.info.status for run in runs(store)] == ["KILLED", "RUNNING"]
    assert len(list(checkpoints.iterdir())) == 1 and list(workdir.glob(".models.*.tmp"))
    set_params(workdir, train__epochs=1)
    result = stage(workdir, "train")  # the next training cleans up after the dead ones
    assert result.returncode == 0 and "left RUNNING by a killed training: marked KILLED" in result.stdout
    assert [run.info.status for run in runs(store)] == ["KILLED", "KILLED", "FINISHED"]
    assert not list(checkpoints.iterdir()) and not list(workdir.glob(".models.*.tmp"))
    assert (workdir / "models" / "w2v_embedding.npy").is_file()


def test_a_store_lost_mid_training_loses_nothing(examples_made: Path, tmp_path: Path) -> None:
    epochs = 200
    workdir = copy_project(examples_made, tmp_path / "project", epochs)
    server, url = mlflow_server(tmp_path / "store")
    try:
        training, lines = start_training(workdir, "Epoch 3/", MLFLOW_TRACKING_URI=url)
        stop_server(server)  # the store goes away at epoch 3
        assert training.stdout is not None
        output = "".join(lines) + training.stdout.read()
        assert training.wait(timeout=300) == 0, output[-3000:]
    finally:
        stop_server(server)
    assert "WARNING: the MLflow store failed" in output and "python -m pipeline sync" in output
    assert len((workdir / "metrics" / "train_history.csv").read_text().splitlines()) == 1 + epochs
    (outbox,) = (workdir / ".w2v" / "outbox").iterdir()
    line = one_line_error(stage(workdir, "sync", MLFLOW_TRACKING_URI=url))  # still down: says so
    assert "does not answer" in line and outbox.is_dir()

    server, _ = mlflow_server(tmp_path / "store", port=int(url.rsplit(":", 1)[1]))  # the store is back
    try:
        synced = stage(workdir, "sync", MLFLOW_TRACKING_URI=url)
        assert synced.returncode == 0 and "tracking requests sent" in synced.stdout, synced.stdout + synced.stderr
        (run,) = runs(url)
        assert run.info.run_id == outbox.name and run.info.status == "FINISHED"
        assert loss_steps(url, run.info.run_id) == list(range(epochs))  # the whole history, each epoch once
        embedding = workdir / "models" / "w2v_embedding.npy"
        assert run.data.tags["w2v.embedding_sha256"] == hashlib.sha256(embedding.read_bytes()).hexdigest()
        from mlflow import MlflowClient

        artifacts = {item.path for item in MlflowClient(tracking_uri=url).list_artifacts(run.info.run_id)}
        assert "tensorboard" in artifacts
        assert not outbox.exists()
        assert "nothing to send" in stage(workdir, "sync", MLFLOW_TRACKING_URI=url).stdout
    finally:
        stop_server(server)


def test_a_tracking_process_that_dies_mid_training_loses_nothing(examples_made: Path, tmp_path: Path) -> None:
    epochs = 100
    workdir = copy_project(examples_made, tmp_path / "project", epochs)
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    training, lines = start_training(workdir, "Epoch 3/")
    (child,) = subprocess.run(["pgrep", "-P", str(training.pid), "-f", "spawn_main"], capture_output=True,
                              text=True).stdout.split()
    os.kill(int(child), signal.SIGKILL)
    assert training.stdout is not None
    output = "".join(lines) + training.stdout.read()
    assert training.wait(timeout=300) == 0, output[-3000:]
    assert "WARNING: the MLflow tracking process died" in output and "python -m pipeline sync" in output
    synced = stage(workdir, "sync")
    assert "tracking requests sent" in synced.stdout, synced.stdout + synced.stderr
    (run,) = runs(store)
    assert run.info.status == "FINISHED" and loss_steps(store, run.info.run_id) == list(range(epochs))
    embedding = workdir / "models" / "w2v_embedding.npy"
    assert run.data.tags["w2v.embedding_sha256"] == hashlib.sha256(embedding.read_bytes()).hexdigest()


def test_training_that_raises_mid_way_fails_in_one_line_and_resumes(examples_made: Path, tmp_path: Path) -> None:
    """A fault inside the training loop (here: the sentences each epoch redraws its examples from
    vanish): one line, the run FAILED, the checkpoint kept; put right, the rerun resumes that run."""
    epochs = 300
    workdir = copy_project(examples_made, tmp_path / "project", epochs)
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    shard = workdir / "data" / "vectorized" / "shard-00000"
    training, lines = start_training(workdir, "Epoch 3/")
    shard.rename(tmp_path / "shard-away")
    assert training.stdout is not None
    output = "".join(lines) + training.stdout.read()
    assert training.wait(timeout=300) == 2, output[-3000:]
    (error,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "data/vectorized/shard-00000 disappeared during training" in error and "dvc checkout" in error
    assert "Traceback" not in output
    (failed,) = runs(store)
    assert failed.info.status == "FAILED" and len(list((workdir / ".w2v" / "checkpoints").iterdir())) == 1
    (tmp_path / "shard-away").rename(shard)
    result = stage(workdir, "train")
    assert result.returncode == 0 and "resumed after epoch" in result.stdout, result.stdout + result.stderr
    (resumed,) = runs(store)
    assert resumed.info.status == "FINISHED" and loss_steps(store, resumed.info.run_id) == list(range(epochs))


def as_float(path: Path) -> None:
    np.save(path, np.load(path).astype(np.float32))


def shard_renamed(path: Path) -> None:
    path.parent.rename(path.parent.with_name("shard-00001"))


@pytest.mark.parametrize(("name", "damage", "message"), [
    ("tokens.npy", half_ids_out_of_range, "tokens.npy holds ids outside the vocabulary of"),
    ("tokens.npy", cut_mid_file, "tokens.npy is missing or damaged"),
    ("tokens.npy", first_half_only, "lengths.npy gives its lines 360 tokens but tokens.npy holds 180"),
    ("lengths.npy", as_float, "lengths.npy holds float32 of shape (40,), not the flat int32 array"),
    ("lengths.npy", shard_renamed, "does not hold the 1 shards its stats.json counts (missing: shard-00000; "
                                   "unexpected: shard-00001)"),
])
def test_damaged_vectorized_shards_stop_training_and_examples_before_their_work(
        examples_made: Path, tmp_path: Path, name: str, damage: Any, message: str) -> None:
    """Training draws every epoch from data/vectorized (examples.redraw_each_epoch): a damaged
    shard there stops it before TensorFlow or MLflow load, as it stops the examples stage, not an IndexError an
    epoch into training."""
    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    damage(workdir / "data" / "vectorized" / "shard-00000" / name)
    (tmp_path / "no-tf" / "tensorflow").mkdir(parents=True)
    (tmp_path / "no-tf" / "tensorflow" / "__init__.py").write_text("raise ImportError('TensorFlow was loaded')\n")
    result = stage(workdir, "train", PYTHONPATH=f"{tmp_path / 'no-tf'}{os.pathsep}{REPO_ROOT}")
    line = one_line_error(result)
    assert "data/vectorized" in line and message in line, line
    assert "dvc repro -f vectorize" in line and "dvc checkout data/vectorized" in line
    assert "Epoch" not in result.stdout and not (workdir / "mlflow.db").exists()
    examples = (workdir / "data" / "examples" / "stats.json").read_bytes()
    assert one_line_error(stage(workdir, "examples")) == line
    assert (workdir / "data" / "examples" / "stats.json").read_bytes() == examples


def test_a_diverging_training_stops_at_its_epoch_writes_no_model_and_is_not_resumed(examples_made: Path,
                                                                                   tmp_path: Path) -> None:
    """A learning rate that blows the tables up: one line at the first epoch whose loss is NaN, no model, no
    metrics, the MLflow run FAILED and its checkpoints gone; the rerun at a sane rate starts a new run."""
    workdir = copy_project(examples_made, tmp_path / "project", 5)
    set_params(workdir, train__learning_rate=100000.0)
    store = f"sqlite:///{workdir / 'mlflow.db'}"
    result = stage(workdir, "train")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # The last line, and the only one of the stage's (MLflow's child logs that it made a fresh store).
    assert [line for line in result.stderr.splitlines() if "mlflow.store.db.utils" not in line] == [
        "error: training diverged at epoch 1 (loss nan): lower train.learning_rate (now 100000) and rerun"]
    assert "Epoch 1/5" not in result.stdout  # stopped before the epoch was reported, logged or checkpointed
    assert not (workdir / "models").exists() and not (workdir / "metrics").exists()
    assert not list(workdir.glob(".models.*.tmp")) and not list((workdir / ".w2v" / "checkpoints").iterdir())
    (failed,) = runs(store)
    assert failed.info.status == "FAILED" and loss_steps(store, failed.info.run_id) == []

    set_params(workdir, train__learning_rate=0.03)
    result = stage(workdir, "train")
    assert result.returncode == 0 and "resumed" not in result.stdout, result.stdout + result.stderr
    assert [run.info.status for run in runs(store)] == ["FAILED", "FINISHED"]
    assert np.isfinite(np.load(workdir / "models" / "w2v_embedding.npy")).all()


@pytest.mark.parametrize("name", ["export", "evaluate"])
def test_an_embedding_with_nan_stops_export_and_evaluate(examples_made: Path, tmp_path: Path, name: str) -> None:
    workdir = tmp_path / "project"
    shutil.copytree(examples_made, workdir)
    vocabulary = (workdir / "data" / "vectorized" / "vocab.txt").read_text().splitlines()
    weights = np.ones((len(vocabulary), 8), np.float32)
    weights[3, 1], weights[5, 0] = np.nan, np.inf
    (workdir / "models").mkdir()
    np.save(workdir / "models" / "w2v_embedding.npy", weights)
    line = one_line_error(stage(workdir, name))
    assert ("models/w2v_embedding.npy holds NaN or infinite values in 2 of its 10 rows: its training diverged; "
            "lower train.learning_rate and retrain (dvc repro train)") in line
    assert not (workdir / "exports").exists() and not (workdir / "metrics").exists()
