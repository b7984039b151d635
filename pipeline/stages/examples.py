"""Stage 3: skip-gram pairs with negatives, written as shards plus a stats file."""

from __future__ import annotations

import json

import numpy as np

from pipeline import layout
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params
from w2vpipe.skipgrams import make_examples
from w2vpipe.training import STATS_FILE
from w2vpipe.vocabulary import load_vocabulary

# Lines per shard. Each shard draws from its own generator seeded by (seed, shard index), so the
# examples do not depend on how shards are scheduled.
SHARD_LINES = 100_000


def run(params: Params) -> str:
    vocabulary = load_vocabulary(layout.VOCABULARY_FILE)
    if not layout.SEQUENCES_FILE.is_file():
        raise PipelineError(f"{layout.SEQUENCES_FILE} not found: run the vectorize stage first (dvc repro vectorize)")
    if params.examples.num_ns >= len(vocabulary):
        raise PipelineError(
            f"examples.num_ns={params.examples.num_ns} needs a larger vocabulary than the corpus gave "
            f"({len(vocabulary)} tokens): lower examples.num_ns"
        )
    sequences = np.load(layout.SEQUENCES_FILE)
    pairs = 0
    with atomic_dir(layout.EXAMPLES_DIR) as out_dir:
        for shard, start in enumerate(range(0, len(sequences), SHARD_LINES)):
            examples = make_examples(
                sequences[start : start + SHARD_LINES],
                window_size=params.examples.window_size,
                num_ns=params.examples.num_ns,
                vocab_size=len(vocabulary),
                rng=np.random.default_rng([params.examples.seed, shard]),
                subsample=params.examples.subsample,
            )
            np.savez(out_dir / f"shard-{shard:05d}.npz", targets=examples.targets, contexts=examples.contexts,
                     labels=examples.labels)
            pairs += len(examples)
        if pairs == 0:
            raise PipelineError(
                "the corpus gave no skip-gram pairs: use a larger corpus or set examples.subsample: false"
            )
        stats = {"sentences": len(sequences), "pairs": pairs, "shards": shard + 1,
                 "num_ns": params.examples.num_ns}
        (out_dir / STATS_FILE).write_text(json.dumps(stats, indent=2) + "\n")
    return f"{pairs:,} pairs with {params.examples.num_ns} negatives each from {len(sequences):,} sentences"
