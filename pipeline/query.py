"""`python -m pipeline query ...`: ask trained embeddings for neighbours, analogies and similarity.

The vectors come from the export stage's folder (the default), a gensim KeyedVectors file, an MLflow
run (`runs:/RUN_ID`, its `embeddings/` artifacts) or a registered model version
(`models:/word2vec@champion`, `models:/word2vec/3`): any of the store's, not only the latest.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import layout
from w2vpipe import vectors as embeddings
from w2vpipe.errors import PipelineError

if TYPE_CHECKING:
    from gensim.models import KeyedVectors


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("query", help="nearest words, analogies and similarity from trained embeddings",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common_options(parser, defaults=True)
    questions = parser.add_subparsers(dest="question", required=True)
    nearest = questions.add_parser("neighbours", help="a word's nearest words by cosine")
    nearest.add_argument("word")
    analogy = questions.add_parser("analogy", help="a is to b as c is to ?")
    analogy.add_argument("a")
    analogy.add_argument("b")
    analogy.add_argument("c")
    for question in (nearest, analogy):
        question.add_argument("--top", type=int, default=10, help="how many words (default 10)")
    pair = questions.add_parser("similarity", help="the cosine of two words")
    pair.add_argument("first")
    pair.add_argument("second")
    for question in (nearest, analogy, pair):
        _add_common_options(question, defaults=False)


def _add_common_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    """--from and --json, before the question or after it. Only `query` itself gives them defaults: argparse
    copies every value a question's parser holds over what was parsed before the question, so there they are
    absent unless given (SUPPRESS)."""
    parser.add_argument("--from", dest="source", default=str(layout.EXPORT_DIR) if defaults else argparse.SUPPRESS,
                        metavar="SOURCE",
                        help="exports folder, .kv file, runs:/RUN_ID or models:/word2vec@champion (default: exports/)")
    parser.add_argument("--json", action="store_true", default=False if defaults else argparse.SUPPRESS,
                        help="one JSON object on stdout, for machines (an error too: {\"error\": ...})")


def load(source: str) -> KeyedVectors:
    """The KeyedVectors that `source` names (see the module's doc)."""
    if not source.startswith(("runs:/", "models:/")):
        return embeddings.load_keyed_vectors(Path(source))
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    tracking.check_store()
    mlflow.set_tracking_uri(tracking.tracking_uri())
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stdout is the answer
    # The file is the served model's artifact: a run's model is `runs:/RUN/pyfunc`, a version is the model itself.
    model = f"{source.rstrip('/')}/{tracking.PYFUNC_ARTIFACT}" if source.startswith("runs:/") else source.rstrip("/")
    uri = f"{model}/artifacts/{embeddings.KEYED_VECTORS_FILE}"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=scratch)
        except (MlflowException, OSError) as error:
            reason = getattr(error, "error_code", type(error).__name__)
            raise PipelineError(f"{source} has no {embeddings.KEYED_VECTORS_FILE} ({reason}): name a run that the "
                                "export stage completed, or a registered model version (models:/word2vec@champion)"
                                ) from None
        return embeddings.load_keyed_vectors(Path(local))


class QueryError(PipelineError):
    """A failed query, with what --json adds to its message (an unknown word and its closest spellings)."""

    def __init__(self, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def answer(args: argparse.Namespace) -> dict[str, Any]:
    """The question's answer as plain data (what --json prints)."""
    top = getattr(args, "top", None)  # similarity has none
    if top is not None and top < 1:
        raise PipelineError(f"--top {top} asks for no words: give 1 or more")
    vectors = load(args.source)
    try:
        if args.question == "neighbours":
            found = embeddings.neighbours(vectors, args.word, args.top)
            return {"question": "neighbours", "word": args.word, "neighbours": [asdict(item) for item in found]}
        if args.question == "analogy":
            found = embeddings.analogy(vectors, args.a, args.b, args.c, args.top)
            return {"question": "analogy", "a": args.a, "b": args.b, "c": args.c,
                    "answers": [asdict(item) for item in found]}
        return {"question": "similarity", "words": [args.first, args.second],
                "cosine": embeddings.similarity(vectors, args.first, args.second)}
    except embeddings.UnknownWordError as error:
        raise QueryError(str(error), {"word": error.word, "closest": error.closest}) from None


def run(args: argparse.Namespace) -> None:
    try:
        result = answer(args)
    except PipelineError as error:
        if not args.json:
            raise
        # A machine reads stdout: the error is one JSON object there, with the status main() gives every error.
        print(json.dumps({"error": str(error), **getattr(error, "details", {})}, ensure_ascii=False))
        sys.exit(2)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return
    if result["question"] == "similarity":
        print(f"cosine({args.first}, {args.second}) = {result['cosine']:.4f}")
        return
    if result["question"] == "neighbours":
        heading, words = f"nearest to {args.word}", result["neighbours"]
    else:
        heading, words = f"{args.a} is to {args.b} as {args.c} is to", result["answers"]
    print(heading)
    for rank, item in enumerate(words, start=1):
        print(f"{rank:>4}. {item['word']:<20} {item['cosine']:.4f}")
