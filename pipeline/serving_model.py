"""The MLflow pyfunc model of a training's embeddings (logged as code: MLflow runs this file to load it).

Input: a list of words, `{"inputs": ["king", "queen"]}` over HTTP. Output: for each word, its
nearest words and their cosines (gensim's `most_similar`: same words, order and cosines), or
`known: false` and no neighbours for a word outside the vocabulary. Params: `top` (default 10) and
`vectors` (default false: add each word's vector).

Whoever can reach the server chooses the request, so its cost is bounded before any work: `top` 1 to
1,000, at most 100,000 words of at most 100 characters, and at most 1,000,000 numbers in the answer
(neighbours, plus vector components when asked), about 50 MB of JSON. A request beyond them is answered
with HTTP 400 and one line saying which bound and how to stay within it.
Self-contained on purpose: a served model needs only numpy, gensim and MLflow, not this project.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from gensim.models import KeyedVectors
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

MAX_TOP = 1_000
MAX_WORDS = 100_000
MAX_WORD_CHARS = 100
MAX_ANSWER_NUMBERS = 1_000_000
# Cosines of one block of words against the whole vocabulary at a time: about 64 MB of float32, whatever
# the vocabulary's size and the request's.
BLOCK_CELLS = 1 << 24


def _refuse(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE: the scoring server answers HTTP 400 with this message.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


class EmbeddingsModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.vectors = KeyedVectors.load(context.artifacts["keyed_vectors"])
        norms = np.linalg.norm(self.vectors.vectors, axis=1, keepdims=True)
        # A zero vector stays zero (cosine 0 with every word) rather than becoming NaN, which JSON cannot hold.
        self.unit = np.divide(self.vectors.vectors, np.where(norms > 0, norms, 1), dtype=np.float32)  # one new table

    # `model_input` has no type hint: MLflow would take the signature from it and drop the params.
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        options = params or {}
        top, with_vectors = int(options.get("top", 10)), bool(options.get("vectors", False))
        words = [str(word) for word in (model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc")
                                        else list(model_input))]
        self._check(words, top, with_vectors)
        indices = [self.vectors.key_to_index.get(word) for word in words]
        # Each distinct word once: the work is bounded by the vocabulary, however many words are sent.
        distinct = sorted({index for index in indices if index is not None})
        neighbours = dict(zip(distinct, self._neighbours(np.array(distinct, dtype=np.int64), top), strict=True))
        answers = []
        for word, index in zip(words, indices, strict=True):
            answer: dict[str, Any] = {"word": word, "known": index is not None,
                                      "neighbours": neighbours[index] if index is not None else []}
            if with_vectors:
                answer["vector"] = self.vectors.vectors[index].tolist() if index is not None else []
            answers.append(answer)
        return answers

    def _check(self, words: list[str], top: int, with_vectors: bool) -> None:
        """Refuse, before any work, a request whose answer would exceed the bounds."""
        if not 1 <= top <= MAX_TOP:
            raise _refuse(f"top={top} is out of range: ask for 1 to {MAX_TOP:,} neighbours per word")
        if len(words) > MAX_WORDS:
            raise _refuse(f"{len(words):,} words in one request: send at most {MAX_WORDS:,} per request")
        long_word = next((word for word in words if len(word) > MAX_WORD_CHARS), None)
        if long_word is not None:
            raise _refuse(f"a word of {len(long_word):,} characters ({long_word[:20]!r}…): words have at most "
                          f"{MAX_WORD_CHARS} characters")
        per_word = min(top, len(self.vectors) - 1) + (self.vectors.vector_size if with_vectors else 0)
        if len(words) * per_word > MAX_ANSWER_NUMBERS:
            raise _refuse(f"{len(words):,} words x {per_word:,} numbers each (top{' and vectors' * with_vectors}) "
                          f"is over {MAX_ANSWER_NUMBERS:,} per request: send fewer words, a smaller top"
                          f"{' or vectors: false' * with_vectors}")

    def _neighbours(self, indices: np.ndarray, top: int) -> list[list[dict[str, Any]]]:
        """Each word's `top` nearest other words by cosine, best first: gensim's most_similar, for a block of
        words at a time in one matrix product, with argpartition picking each row's best."""
        count = min(top, len(self.vectors) - 1)
        if count < 1:
            return [[] for _ in indices]
        keys = self.vectors.index_to_key
        answers = []
        block = max(1, BLOCK_CELLS // len(self.unit))
        for start in range(0, len(indices), block):
            rows = indices[start:start + block]
            cosines = self.unit[rows] @ self.unit.T
            cosines[np.arange(len(rows)), rows] = -np.inf  # a word is not its own neighbour (gensim leaves it out)
            best = np.argpartition(cosines, cosines.shape[1] - count, axis=1)[:, -count:]
            best_cosines = np.take_along_axis(cosines, best, axis=1)
            order = np.argsort(-best_cosines, axis=1, kind="stable")
            best, best_cosines = np.take_along_axis(best, order, axis=1), np.take_along_axis(best_cosines, order, 1)
            answers.extend([{"word": keys[other], "cosine": cosine} for other, cosine in zip(row, row_cosines)]
                           for row, row_cosines in zip(best.tolist(), best_cosines.tolist(), strict=True))
        return answers


mlflow.models.set_model(EmbeddingsModel())
