"""Stage 6: score the embeddings (WordSim353, SimLex-999, Google analogies, by gensim) and list the
probe words' nearest neighbours; DVC metrics files, added to the training's MLflow run."""

from __future__ import annotations

import json
from dataclasses import asdict

from pipeline import layout, tracking
from w2vpipe.evaluation import evaluate_embeddings
from w2vpipe.files import atomic_file
from w2vpipe.params import Params
from w2vpipe.vocabulary import load_vocabulary


def run(params: Params) -> str:
    vocabulary = load_vocabulary(layout.VOCABULARY_FILE)
    weights = layout.load_embedding(vocabulary)
    evaluation = evaluate_embeddings(vocabulary, weights, params.evaluate.probe_words, params.evaluate.neighbours)
    neighbours = {"neighbours": {word: [asdict(neighbour) for neighbour in nearest]
                                 for word, nearest in evaluation.neighbours.items()},
                  "missing": evaluation.missing_probes}
    for path, content in ((layout.EVALUATE_METRICS_FILE, evaluation.metrics()), (layout.NEIGHBOURS_FILE, neighbours)):
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    for word, nearest in evaluation.neighbours.items():
        print(f"  {word}: " + ", ".join(f"{neighbour.word} {neighbour.cosine:.2f}" for neighbour in nearest),
              flush=True)
    uncovered = [name for name, result in evaluation.word_pairs.items() if not result.pairs]
    uncovered += ["analogies"] if not evaluation.analogies.questions else []
    if uncovered:
        print(f"  {', '.join(uncovered)}: none of its words are in the vocabulary (a corpus in another language?), "
              f"so the score is null with coverage 0", flush=True)
    if evaluation.missing_probes:
        print(f"  not in the vocabulary: {', '.join(evaluation.missing_probes)}", flush=True)
    tracked = tracking.track_outputs(layout.EMBEDDING_FILE, [["log_evaluation", str(layout.EVALUATE_METRICS_FILE),
                                                               str(layout.NEIGHBOURS_FILE)]])
    return f"{evaluation.summary()}; {tracked}"
