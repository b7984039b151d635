"""Stage 4: train the model; save its two tables (the word vectors and the output vectors), its per-epoch
history, and TensorBoard logs.

Opens the training's MLflow run (params, tags, per-epoch metrics, logs); a child process does the MLflow
work while this one trains. Every finished epoch is checkpointed
outside DVC's outputs: a training killed at any point resumes there, into the same MLflow run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import time
from functools import partial
from pathlib import Path

import numpy as np

from pipeline import checkpoints, layout, tracking
from pipeline.stages.examples import shard_examples
from w2vpipe import distributed
from w2vpipe.backend import cache_compiled_programs, select_backend
from w2vpipe.errors import PipelineError
from w2vpipe.files import SHARD_GLOB, atomic_dir, atomic_file
from w2vpipe.params import Params, flatten
from w2vpipe.skipgrams import Examples, noise_probabilities, word_counts
from w2vpipe.training import (
    ExampleSource,
    TrainingDiverged,
    check_trainable,
    example_shards,
    train_word2vec,
)


def run(params: Params) -> str:
    # Cheap checks first: TensorFlow and MLflow take seconds to import.
    counts = layout.load_counts()
    stats_file = layout.EXAMPLES_DIR / layout.STATS_FILE_NAME
    layout.require_input(stats_file, "examples")
    stats = json.loads(stats_file.read_text())
    per_batch = params.examples.negatives == "per_batch"
    for key, wanted in (("negatives", params.examples.negatives), ("architecture", params.train.architecture)):
        if stats.get(key) != wanted:
            raise PipelineError(f"the examples were made with {key} {stats.get(key)} but params.yaml asks for "
                                f"{wanted}: rerun the examples stage (dvc repro examples)")
    if not stats.get("pairs_stored", True) and not params.examples.redraw_each_epoch:
        raise PipelineError("the examples stage stored no training pairs (examples.redraw_each_epoch was true) but "
                            "params.yaml trains on stored ones: rerun the examples stage (dvc repro examples)")
    check_trainable(stats["pairs"], params.train)
    if params.train.shared_negatives and not per_batch:
        raise PipelineError("train.shared_negatives draws negatives per batch: set examples.negatives: per_batch, "
                            "or train.shared_negatives: 0")
    if params.train.updates == "hogwild":
        for setting, unlike in (("optimizer", "sgd"), ("backend", "jax"), ("shared_negatives", 0)):
            if getattr(params.train, setting) != unlike:
                raise PipelineError(f"train.updates hogwild is the CPU loop of sgd on jax with per-example negatives, "
                                    f"not train.{setting} {getattr(params.train, setting)}: set train.updates: batch, "
                                    f"or train.{setting}: {unlike}")
    layout.check_example_shards(len(counts), stats)
    if params.examples.redraw_each_epoch:  # every epoch after the first draws its examples from these
        layout.check_vectorized_shards(len(counts), held_out=False)
    group = distributed.process_group_from_env()
    backend = params.train.effective_backend
    select_backend(backend)
    if group is not None:
        distributed.join(group, backend)
        if group.index:
            return train_in_group(params, counts, stats, group, distributed.placement(group, backend))
    tracking.check_store()
    placement = distributed.placement(group, backend, params.train.cores, bool(params.train.shared_negatives))
    if not isinstance(placement, distributed.HostCores):  # numba's loop keeps its own cache
        cache_compiled_programs()
    if params.train.updates == "hogwild" and not isinstance(placement, distributed.HostCores):
        raise PipelineError("train.updates hogwild trains on this machine's CPU cores, but this run trains on JAX's "
                            "devices (an accelerator, or a process group): set train.updates: batch")

    shards = training_shards(params, counts)
    validation = validation_shards()

    checkpoint_dir, earlier_try = checkpoints.claim(checkpoints.training_key(params, stats))
    logged_params = {**flatten(params), "effective_learning_rate": params.train.effective_learning_rate,
                     "effective_backend": backend, "effective_cores": placement.cores}
    # One folder per run, named as the run (the DVC experiment) where it has a name; a resumed run keeps its own.
    tensorboard_dir = Path(earlier_try.get("tensorboard_dir") or layout.project_root() / layout.TENSORBOARD_DIR / (
        os.environ.get("DVC_EXP_NAME") or time.strftime("%Y%m%d-%H%M%S")))
    if "tensorboard_dir" not in earlier_try:
        shutil.rmtree(tensorboard_dir, ignore_errors=True)  # an earlier run of the same name
    resume_run_id = earlier_try.get("run_id")
    with tracking.TrainTracking(logged_params, {"stage": "train"}, resume_run_id=resume_run_id) as mlflow_run:
        def claim_run() -> None:
            run_id = mlflow_run.wait_ready()
            checkpoints.write_owner(checkpoint_dir, run_id=run_id, tensorboard_dir=str(tensorboard_dir))

        with atomic_dir(layout.MODEL_DIR) as out_dir:
            try:
                result = train_word2vec(
                    shards,
                    pairs=stats["pairs"],
                    vocab_size=len(counts),
                    params=params.train,
                    num_ns=params.examples.num_ns,
                    noise=noise(params, counts),
                    tensorboard_dir=tensorboard_dir,
                    on_epoch_end=mlflow_run.log_epoch,
                    before_checkpoint=claim_run,
                    validation=validation,
                    # A group's other processes keep no checkpoints, so a group starts over rather than resume.
                    checkpoint_dir=checkpoint_dir if group is None else None,
                    placement=placement,
                )
            except TrainingDiverged:
                shutil.rmtree(checkpoint_dir, ignore_errors=True)  # a rerun starts over rather than diverge again
                raise
            for path, table in zip((layout.EMBEDDING_FILE, layout.CONTEXT_FILE), result.tables, strict=True):
                np.save(out_dir / path.name, table)
            if result.first_epoch:
                mlflow_run.set_tags({"w2v.resumed_at_epoch": str(result.first_epoch)})
            # Every epoch again, from the history on disk: the run gets any that a killed try or a dead tracking
            # process did not send (those already in the store are skipped).
            for epoch in range(params.train.epochs):
                mlflow_run.log_epoch(epoch, {name: values[epoch] for name, values in result.history.items()})
            mlflow_run.log_artifact(tensorboard_dir, "tensorboard")
            mlflow_run.tag_embedding(out_dir / layout.EMBEDDING_FILE.name)
            # Before the new model takes the old one's place: metrics/ never describes another model than models/.
            write_history(result.history)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    unchanged = tracking.track_unchanged_outputs(layout.EMBEDDING_FILE)
    if unchanged:
        print(unchanged, flush=True)
    final = {name: values[-1] for name, values in result.history.items()}
    trained_pairs = (params.train.epochs - result.first_epoch) * result.steps_per_epoch * params.train.batch_size
    held_out = (f", held out: loss {final['val_loss']:.4f}, accuracy {final['val_accuracy']:.4f}"
                if "val_loss" in final else "")
    resumed = f" (resumed after epoch {result.first_epoch}, from its checkpoint)" if result.first_epoch else ""
    where = ""
    if placement.devices > 1:
        where = f" on {placement.devices} devices" + (f" of {group.count} processes" if group else "")
    if placement.cores > 1:
        where = f" on {placement.cores} CPU cores"
    if params.train.updates == "hogwild":
        where += " (hogwild updates)"
    if params.train.optimizer == "adam":
        where += " with Adam (Keras's model.fit)"
    return (f"{params.train.epochs} epochs{resumed} of {result.steps_per_epoch} steps{where} on {stats['pairs']:,} "
            f"pairs: "
            f"loss {final['loss']:.4f}, accuracy {final['accuracy']:.4f}{held_out}; fit in {result.fit_seconds:.2f} s "
            f"({trained_pairs / result.fit_seconds:,.0f} pairs/s) (MLflow run {mlflow_run.run_id})")


def train_in_group(params: Params, counts: np.ndarray, stats: dict[str, int], group: distributed.ProcessGroup,
                   placement: distributed.Placement) -> str:
    """A process other than 0 of a group: the same training, in step with process 0; no outputs."""
    result = train_word2vec(training_shards(params, counts), pairs=stats["pairs"], vocab_size=len(counts),
                            params=params.train, num_ns=params.examples.num_ns, noise=noise(params, counts),
                            verbose=0, validation=validation_shards(), placement=placement)
    embedding = result.tables[0]
    return (f"process {group.index} of {group.count}: {params.train.epochs} epochs on {placement.devices} devices, "
            f"loss {result.history['loss'][-1]:.4f}; embedding {embedding.shape[0]:,} x {embedding.shape[1]}, "
            f"sha256 {hashlib.sha256(embedding.tobytes()).hexdigest()} (process 0 writes the outputs)")


def validation_shards() -> list[Path]:
    """The held-out lines' example shards, scored after every epoch."""
    return sorted((layout.EXAMPLES_DIR / layout.VALIDATION_DIR_NAME).glob(SHARD_GLOB))


def noise(params: Params, counts: np.ndarray) -> np.ndarray | None:
    """The negatives' distribution when they are drawn per batch."""
    if params.examples.negatives != "per_batch":
        return None
    return noise_probabilities(params.examples.noise, word_counts(counts, params.examples.drop_before_windowing))


def training_shards(params: Params, counts: np.ndarray) -> list[ExampleSource]:
    """The examples stage's shards; with `examples.redraw_each_epoch`, each shard a function that
    draws its examples for each epoch from the vectorized sentences (subsampling, dynamic windows,
    stored negatives): epoch 0 the examples stage's draw, every later epoch a new one, as word2vec.c
    and gensim draw anew at every pass."""
    if not params.examples.redraw_each_epoch:
        return list(example_shards(layout.EXAMPLES_DIR))
    indices = [int(path.name.removeprefix("shard-")) for path in sorted(layout.VECTORIZED_DIR.glob(SHARD_GLOB))]
    return [partial(epoch_examples, index, params, counts) for index in indices]


def epoch_examples(index: int, params: Params, counts: np.ndarray, epoch: int) -> Examples:
    # The read itself tells a vanished shard: a check before it could pass just before the shard goes.
    try:
        return shard_examples(index, params.examples, params.train.architecture, counts, epoch=epoch)[1]
    except FileNotFoundError:
        source = layout.shard_dir(layout.VECTORIZED_DIR, index)
        raise PipelineError(f"{source} disappeared during training (epoch {epoch + 1} draws its examples from it): "
                            f"restore it (dvc checkout {layout.VECTORIZED_DIR}) and rerun: training resumes") from None


def write_history(history: dict[str, list[float]]) -> None:
    """Final metrics (DVC metrics) and the per-epoch curves (DVC plots)."""
    names = sorted(history)
    with atomic_file(layout.TRAIN_HISTORY_FILE) as tmp, tmp.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["epoch", *names])
        for epoch, values in enumerate(zip(*(history[name] for name in names), strict=True)):
            writer.writerow([epoch, *values])
    with atomic_file(layout.TRAIN_METRICS_FILE) as tmp:
        tmp.write_text(json.dumps({name: history[name][-1] for name in names}, indent=2) + "\n")
