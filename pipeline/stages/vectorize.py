"""Stage 2: adapt the tutorial's TextVectorization layer; save the vocabulary and integer sequences."""

from __future__ import annotations

import numpy as np

from pipeline import layout
from w2vpipe.corpus import check_corpus_text, corpus_filename
from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_dir
from w2vpipe.params import Params
from w2vpipe.vocabulary import adapt_vectorizer, read_nonempty_lines, save_vocabulary, vectorize_lines


def run(params: Params) -> str:
    corpus = layout.CORPUS_DIR / corpus_filename(params.corpus.url)
    if not corpus.is_file():
        raise PipelineError(f"{corpus} not found: run the download stage first (dvc repro download)")
    check_corpus_text(corpus)
    lines = read_nonempty_lines(corpus)
    vectorize_layer = adapt_vectorizer(lines, params.vectorize.vocab_size, params.vectorize.sequence_length)
    vocabulary = vectorize_layer.get_vocabulary()
    sequences = vectorize_lines(vectorize_layer, lines)
    with atomic_dir(layout.VECTORIZED_DIR) as out_dir:
        save_vocabulary(vocabulary, out_dir / layout.VOCABULARY_FILE.name)
        np.save(out_dir / layout.SEQUENCES_FILE.name, sequences)
    return f"{len(sequences):,} lines of {sequences.shape[1]} tokens, vocabulary of {len(vocabulary):,} tokens"
