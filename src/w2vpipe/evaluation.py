"""How good are the embeddings: word similarity, analogies and nearest neighbours, by gensim.

Scores come from gensim's `KeyedVectors` on the data files gensim ships: WordSim353 and SimLex-999
(Spearman correlation between the cosine of each covered pair and human ratings) and the Google
analogy questions (3CosAdd accuracy on the covered questions). Coverage says how much of each
set the vocabulary could answer: a score on 10% of the pairs is not a score on all of them.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from w2vpipe.vectors import Neighbour, keyed_vectors, neighbours

if TYPE_CHECKING:
    from gensim.models import KeyedVectors

WORD_PAIR_SETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGY_SET = "questions-words.txt"
# gensim scores pairs and analogies among the most frequent 300,000 words (its `restrict_vocab`); the
# probe words' neighbours are looked for among the same words.
EVALUATED_WORDS = 300_000
# Scores are written with this many decimals: a float sum's last bits depend on the CPU's vector
# width and the arrays' alignment, and a rounded score is the same on any machine.
DECIMALS = 6


@dataclass(frozen=True)
class PairScore:
    spearman: float | None  # None when no pair is covered
    pearson: float | None
    coverage: float  # share of the set's pairs whose two words are in the vocabulary
    pairs: int  # pairs scored


@dataclass(frozen=True)
class AnalogyScore:
    accuracy: float | None  # on the covered questions; None when none is covered
    coverage: float  # share of the set's questions whose four words are in the vocabulary
    questions: int  # questions scored


@dataclass(frozen=True)
class Evaluation:
    word_pairs: dict[str, PairScore]
    analogies: AnalogyScore
    neighbours: dict[str, list[Neighbour]]  # probe word -> its nearest words, closest first
    missing_probes: list[str]  # probe words outside the vocabulary

    def metrics(self) -> dict[str, Any]:
        """Nested scores, as DVC metrics files hold them (`wordsim353.spearman`, ...), rounded to `DECIMALS`."""
        scores = {**{name: asdict(score) for name, score in self.word_pairs.items()},
                  "analogies": asdict(self.analogies)}
        return {name: {key: round(value, DECIMALS) if isinstance(value, float) else value
                       for key, value in values.items()} for name, values in scores.items()}

    def summary(self) -> str:
        """One line: each score with its coverage."""
        def score(value: float | None, digits: str) -> str:
            return "n/a" if value is None else format(value, digits)

        pairs = [f"{name} {score(result.spearman, '.3f')} ({result.coverage:.0%} of pairs)"
                 for name, result in self.word_pairs.items()]
        return (", ".join(pairs) + f", analogies {score(self.analogies.accuracy, '.1%')} of "
                f"{self.analogies.questions:,} questions ({self.analogies.coverage:.0%} covered)")


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """`{"wordsim353_spearman": 0.41, ...}` from `Evaluation.metrics()`: numbers only, for MLflow (a
    missing score is left out)."""
    return {f"{name}_{key}": float(value) for name, values in metrics.items()
            for key, value in values.items() if value is not None}


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def score_word_pairs(vectors: KeyedVectors, data_file: str) -> PairScore:
    from gensim.test.utils import datapath

    total = _count_pairs(datapath(data_file))
    with warnings.catch_warnings():  # "mean of empty slice" and friends when nothing is covered
        warnings.simplefilter("ignore")
        try:
            pearson, spearman, oov_percent = vectors.evaluate_word_pairs(datapath(data_file))
        except ValueError:  # gensim's "No valid similarity judgements found": no pair is covered
            return PairScore(spearman=None, pearson=None, coverage=0.0, pairs=0)
    coverage = 1 - oov_percent / 100
    return PairScore(spearman=_number(spearman[0]), pearson=_number(pearson[0]), coverage=coverage,
                     pairs=round(coverage * total))


def _count_pairs(path: str) -> int:
    with open(path, encoding="utf-8") as data:
        return sum(1 for line in data if line.strip() and not line.startswith("#"))


def score_analogies(vectors: KeyedVectors) -> AnalogyScore:
    from gensim.test.utils import datapath

    path = datapath(ANALOGY_SET)
    with open(path, encoding="utf-8") as data:
        total = sum(1 for line in data if line.strip() and not line.startswith(":"))
    accuracy, sections = vectors.evaluate_word_analogies(path)
    overall = sections[-1]  # gensim's "Total accuracy" section
    questions = len(overall["correct"]) + len(overall["incorrect"])
    return AnalogyScore(accuracy=float(accuracy) if questions else None, coverage=questions / total,
                        questions=questions)


def nearest_neighbours(vectors: KeyedVectors, words: list[str], top: int = 10) -> dict[str, list[Neighbour]]:
    """The `top` nearest words (by cosine) of each word in the vocabulary; the others are left out."""
    return {word: [Neighbour(near.word, round(near.cosine, DECIMALS)) for near in neighbours(vectors, word, top)]
            for word in words if word in vectors.key_to_index}


def evaluate_embeddings(vocabulary: list[str], weights: np.ndarray, probe_words: list[str],
                        top: int = 10) -> Evaluation:
    """The scores of the most frequent `EVALUATED_WORDS` words, in float64: a near tie between two
    cosines then falls the same way on any machine."""
    rows = EVALUATED_WORDS + 2  # padding and [UNK] come first, and are left out
    return evaluate_keyed_vectors(keyed_vectors(vocabulary[:rows], weights[:rows], dtype=np.float64),
                                  probe_words, top)


def evaluate_keyed_vectors(vectors: KeyedVectors, probe_words: list[str], top: int = 10) -> Evaluation:
    """Every score, and the probe words' neighbours, of any `KeyedVectors` (gensim's own models too)."""
    # gensim logs every section's accuracy at INFO: the scores are returned instead.
    logging.getLogger("gensim").setLevel(logging.WARNING)
    probes = [word.lower() for word in probe_words]
    return Evaluation(
        word_pairs={name: score_word_pairs(vectors, data_file) for name, data_file in WORD_PAIR_SETS.items()},
        analogies=score_analogies(vectors),
        neighbours=nearest_neighbours(vectors, probes, top),
        missing_probes=[word for word in probes if word not in vectors.key_to_index],
    )
