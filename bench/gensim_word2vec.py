"""gensim's Word2Vec on a corpus, with the pipeline's hyperparameters, timed: what users run today.

Reads lines with the tutorial's standardization (lowercase, strip ASCII punctuation), keeps the
`vocab_size - 2` most frequent words (the pipeline's vocabulary less padding and [UNK]), and
trains skip-gram with negative sampling. Prints one JSON object.

    python bench/gensim_word2vec.py CORPUS [--epochs 20] [--dim 128] [--window 2] [--negative 4] [--evaluate]
                                    [--min-count 5] [--save FILE] [--stream]

With --evaluate, the vectors are also scored by the pipeline's evaluation code (WordSim353, SimLex-999,
analogies), as its evaluate stage scores its own.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import string
import time

PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


def sentences(path: str) -> list[list[str]]:
    with open(path, encoding="utf-8") as corpus:
        return [words for line in corpus if (words := PUNCTUATION.sub("", line.lower()).split())]


class StreamedSentences:
    """The same sentences read from the file at every pass, as gensim's LineSentence reads a corpus too large
    to hold: memory for the vocabulary and the tables only."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __iter__(self):  # type: ignore[no-untyped-def]
        with open(self.path, encoding="utf-8") as corpus:
            for line in corpus:
                if words := PUNCTUATION.sub("", line.lower()).split():
                    yield words


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--negative", type=int, default=4)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--min-count", type=int, help="keep the words seen this often instead (no --vocab-size)")
    parser.add_argument("--save", help="save the vectors here (word2vec binary format), timed")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--stream", action="store_true", help="read the corpus at every pass instead of holding it")
    args = parser.parse_args()

    started = time.perf_counter()
    from gensim.models import Word2Vec

    corpus = StreamedSentences(args.corpus) if args.stream else sentences(args.corpus)
    read = time.perf_counter()
    model = Word2Vec(vector_size=args.dim, window=args.window, negative=args.negative, sg=1, min_count=args.min_count or 1,
                     max_final_vocab=None if args.min_count else args.vocab_size - 2, workers=args.workers, seed=42)
    model.build_vocab(corpus)
    vocab = time.perf_counter()
    effective, raw = model.train(corpus, total_examples=model.corpus_count, epochs=args.epochs)
    trained = time.perf_counter()
    if args.save:
        model.wv.save_word2vec_format(args.save, binary=True)
    saved = time.perf_counter()
    scores = {}
    if args.evaluate:
        from w2vpipe.evaluation import evaluate_keyed_vectors

        scores = evaluate_keyed_vectors(model.wv, []).metrics()
    print(json.dumps({
        "read": read - started, "vocab": vocab - read, "train": trained - vocab, "save": saved - trained,
        "total": saved - started,
        "raw_words": raw, "effective_words": effective, "vocab_size": len(model.wv),
        "corpus_words": model.corpus_total_words, "scores": scores,
    }))


if __name__ == "__main__":
    main()
