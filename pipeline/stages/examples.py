"""Stage 3: skip-gram pairs or CBOW windows (with negatives, or positives only when negatives are
drawn per batch), one examples shard per vectorized shard, each a task on a Dask cluster
(`pipeline.cluster`), plus a stats file. Held-out lines give validation examples, always with their
negatives: the same every epoch.

With `examples.redraw_each_epoch` (the default) training draws every epoch's examples itself, from the
vectorized sentences and the seeds (`shard_examples`), the first epoch's as this stage draws them: the
stage then stores no training pairs (8 bytes a pair, several pairs a word: many times the corpus), only
how many each shard gives, which sets the epoch's steps. Without it, every epoch trains on the pairs
stored here (the tutorial's way)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from pipeline import cluster, layout
from w2vpipe.errors import PipelineError
from w2vpipe.files import SHARD_GLOB, atomic_dir
from w2vpipe.params import ExamplesParams, Params
from w2vpipe.skipgrams import Examples, make_examples, save_examples
from w2vpipe.vocabulary import Sentences, load_sentences


def shard_examples(index: int, params: ExamplesParams, architecture: str, counts: np.ndarray, epoch: int = 0,
                   validation: bool = False, vectorized_dir: Path = layout.VECTORIZED_DIR) -> tuple[int, Examples]:
    """(sentences, examples) of vectorized shard `index` (or of its held-out lines) for `epoch`,
    seeded by (seed, index, epoch): the same whichever worker or process draws them. A shard too
    small to hold out a line gives none; a training shard that is not there raises FileNotFoundError."""
    source = layout.shard_dir(vectorized_dir, index, validation)
    if validation and not source.is_dir():
        sentences = Sentences(np.zeros(0, np.int32), np.zeros(0, np.int32))
    else:
        sentences = load_sentences(source)
    # Independent random streams: (seed, index) is the stage's draw, which epoch 0 trains on;
    # (seed, index, 1) the held-out lines'; (seed, index, 2, epoch) each later epoch's redraw.
    stream = [params.seed, index, *([1] if validation else [2, epoch] if epoch else [])]
    return len(sentences), make_examples(
        sentences.tokens,
        sentences.lengths,
        window_size=params.window_size,
        num_ns=params.num_ns,
        counts=counts,
        rng=np.random.default_rng(stream),
        subsample=params.subsample,
        sample=params.sample,
        noise=params.noise,
        store_negatives=validation or params.negatives == "stored",
        architecture=architecture,
        drop_before_windowing=params.drop_before_windowing,
        dynamic_window=params.dynamic_window,
    )


def make_shard(index: int, params: ExamplesParams, architecture: str, counts: np.ndarray, vectorized_dir: Path,
               out_dir: Path, validation: bool = False) -> tuple[int, int]:
    """Task: draw epoch 0's examples of shard `index` (or of its held-out lines), and write them unless training
    draws them itself; (sentences, examples)."""
    sentences, examples = shard_examples(index, params, architecture, counts, validation=validation,
                                         vectorized_dir=vectorized_dir)
    if len(examples) and (validation or stores_training_pairs(params)):
        save_examples(examples, layout.shard_dir(out_dir, index, validation))
    return sentences, len(examples)


def stores_training_pairs(params: ExamplesParams) -> bool:
    """Whether the training pairs are stored: only when every epoch trains on the same draw."""
    return not params.redraw_each_epoch


def run(params: Params) -> str:
    counts = layout.load_counts()  # one per vocabulary entry
    layout.check_vectorized_shards(len(counts), held_out=True)
    vectorized = sorted(layout.VECTORIZED_DIR.glob(SHARD_GLOB))
    if params.examples.num_ns >= len(counts):
        raise PipelineError(
            f"examples.num_ns={params.examples.num_ns} needs a larger vocabulary than the corpus gave "
            f"({len(counts)} tokens): lower examples.num_ns"
        )
    with cluster.shard_runner(params.cluster) as shards, atomic_dir(layout.EXAMPLES_DIR) as out_dir:
        started = time.perf_counter()  # the stage's work, less a local cluster's start: what the benchmark compares
        # Workers may run elsewhere: absolute paths on the shared filesystem.
        job = {"params": params.examples, "architecture": params.train.architecture,
               "counts": counts, "vectorized_dir": layout.VECTORIZED_DIR.resolve(),
               "out_dir": out_dir.resolve()}
        results = shards.run(make_shard, range(len(vectorized)), lambda index, result: print(
            f"  shard {index}: {result[1]:,} examples", flush=True), **job)
        validation = shards.run(make_shard, range(len(vectorized)), validation=True, **job)
        workers = shards.describe()
        sentences = sum(result[0] for result in results)
        pairs = sum(result[1] for result in results)
        if pairs == 0:
            advice = " or set examples.subsample: false" if params.examples.subsample else ""
            raise PipelineError(f"the corpus gave no training examples: use a larger corpus{advice}")
        stats = {"sentences": sentences, "pairs": pairs, "pairs_stored": stores_training_pairs(params.examples),
                 "shards": len(vectorized), "num_ns": params.examples.num_ns,
                 "negatives": params.examples.negatives, "architecture": params.train.architecture,
                 "validation_sentences": sum(result[0] for result in validation),
                 "validation_pairs": sum(result[1] for result in validation)}
        (out_dir / layout.STATS_FILE_NAME).write_text(json.dumps(stats, indent=2) + "\n")
        seconds = time.perf_counter() - started - shards.startup_seconds
    negatives = (f"{params.examples.num_ns} negatives each" if params.examples.negatives == "stored"
                 else f"positives only ({params.examples.num_ns} negatives to be drawn per batch)")
    kind = "CBOW windows" if params.train.architecture == "cbow" else "skip-gram pairs"
    if not stats["pairs_stored"]:
        negatives += "; counted, not stored: training draws them"
    return (f"{pairs:,} {kind}, {negatives}, from {sentences:,} sentences ({stats['validation_pairs']:,} held out); "
            f"shards: {len(vectorized)}; {workers}; made in {seconds:.3f} s ({sentences / seconds:,.0f} lines/s)")
