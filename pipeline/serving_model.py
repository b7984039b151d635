"""The MLflow pyfunc model of a training's embeddings (logged as code: MLflow runs this file to load it).

Input: a list of words, `{"inputs": ["king", "queen"]}` over HTTP. Output: for each word, its
nearest words and their cosines, or `known: false` and no neighbours for a word outside the
vocabulary. Params: `top` (default 10) and `vectors` (default false: add each word's vector).
Self-contained on purpose: a served model needs only gensim and MLflow, not this project.
"""

from __future__ import annotations

from typing import Any

import mlflow
from gensim.models import KeyedVectors


class EmbeddingsModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.vectors = KeyedVectors.load(context.artifacts["keyed_vectors"])

    # `model_input` has no type hint: MLflow would take the signature from it and drop the params.
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        options = params or {}
        top, with_vectors = int(options.get("top", 10)), bool(options.get("vectors", False))
        words = model_input.iloc[:, 0].tolist() if hasattr(model_input, "iloc") else list(model_input)
        answers = []
        for word in map(str, words):
            known = word in self.vectors.key_to_index
            answer: dict[str, Any] = {"word": word, "known": known, "neighbours": [
                {"word": other, "cosine": float(cosine)}
                for other, cosine in (self.vectors.most_similar(word, topn=top) if known else [])]}
            if with_vectors:
                answer["vector"] = self.vectors[word].tolist() if known else []
            answers.append(answer)
        return answers


mlflow.models.set_model(EmbeddingsModel())
