"""The TensorFlow word2vec tutorial's code, as published, timed phase by phase.

Only change: Keras 3 dropped `skipgrams` and `make_sampling_table`, so they come from
`tf_keras` (Keras 2). Used for benchmarks and reference tests, never by the pipeline.

    python bench/tutorial_word2vec.py CORPUS [--epochs 20] [--out DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import string
import sys
import time

PHASES: dict[str, float] = {}
_t0 = time.perf_counter()


def _mark(name: str, since: float) -> float:
    now = time.perf_counter()
    PHASES[name] = now - since
    print(f"[tutorial] {name}: {PHASES[name]:.2f} s", file=sys.stderr, flush=True)
    return now


parser = argparse.ArgumentParser()
parser.add_argument("corpus")
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--out", default=".")
parser.add_argument("--json", default=None)
args = parser.parse_args()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tqdm  # noqa: E402
from tensorflow.keras import layers  # noqa: E402
from tf_keras.preprocessing.sequence import make_sampling_table, skipgrams  # noqa: E402

t = _mark("import", _t0)

SEED = 42
AUTOTUNE = tf.data.AUTOTUNE


def generate_training_data(sequences, window_size, num_ns, vocab_size, seed):
    targets, contexts, labels = [], [], []
    sampling_table = make_sampling_table(vocab_size)
    for sequence in tqdm.tqdm(sequences, mininterval=5):
        positive_skip_grams, _ = skipgrams(
            sequence,
            vocabulary_size=vocab_size,
            sampling_table=sampling_table,
            window_size=window_size,
            negative_samples=0,
        )
        for target_word, context_word in positive_skip_grams:
            context_class = tf.expand_dims(tf.constant([context_word], dtype="int64"), 1)
            negative_sampling_candidates, _, _ = tf.random.log_uniform_candidate_sampler(
                true_classes=context_class,
                num_true=1,
                num_sampled=num_ns,
                unique=True,
                range_max=vocab_size,
                seed=seed,
                name="negative_sampling",
            )
            context = tf.concat([tf.squeeze(context_class, 1), negative_sampling_candidates], 0)
            label = tf.constant([1] + [0] * num_ns, dtype="int64")
            targets.append(target_word)
            contexts.append(context)
            labels.append(label)
    return targets, contexts, labels


path_to_file = args.corpus
text_ds = tf.data.TextLineDataset(path_to_file).filter(lambda x: tf.cast(tf.strings.length(x), bool))


def custom_standardization(input_data):
    lowercase = tf.strings.lower(input_data)
    return tf.strings.regex_replace(lowercase, "[%s]" % re.escape(string.punctuation), "")


vocab_size = 4096
sequence_length = 10
vectorize_layer = layers.TextVectorization(
    standardize=custom_standardization,
    max_tokens=vocab_size,
    output_mode="int",
    output_sequence_length=sequence_length,
)
vectorize_layer.adapt(text_ds.batch(1024))
inverse_vocab = vectorize_layer.get_vocabulary()
text_vector_ds = text_ds.batch(1024).prefetch(AUTOTUNE).map(vectorize_layer).unbatch()
sequences = list(text_vector_ds.as_numpy_iterator())
t = _mark("vectorize", t)

targets, contexts, labels = generate_training_data(
    sequences=sequences, window_size=2, num_ns=4, vocab_size=vocab_size, seed=SEED
)
targets = np.array(targets)
contexts = np.array(contexts)
labels = np.array(labels)
t = _mark("examples", t)

BATCH_SIZE = 1024
BUFFER_SIZE = 10000
dataset = tf.data.Dataset.from_tensor_slices(((targets, contexts), labels))
dataset = dataset.shuffle(BUFFER_SIZE).batch(BATCH_SIZE, drop_remainder=True)
dataset = dataset.cache().prefetch(buffer_size=AUTOTUNE)


class Word2Vec(tf.keras.Model):
    def __init__(self, vocab_size, embedding_dim):
        super().__init__()
        self.target_embedding = layers.Embedding(vocab_size, embedding_dim, name="w2v_embedding")
        self.context_embedding = layers.Embedding(vocab_size, embedding_dim)

    def call(self, pair):
        target, context = pair
        if len(target.shape) == 2:
            target = tf.squeeze(target, axis=1)
        word_emb = self.target_embedding(target)
        context_emb = self.context_embedding(context)
        dots = tf.einsum("be,bce->bc", word_emb, context_emb)
        return dots


embedding_dim = 128
word2vec = Word2Vec(vocab_size, embedding_dim)
word2vec.compile(
    optimizer="adam",
    loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
tensorboard_callback = tf.keras.callbacks.TensorBoard(log_dir=os.path.join(args.out, "logs"))
word2vec.fit(dataset, epochs=args.epochs, callbacks=[tensorboard_callback], verbose=0)
t = _mark("train", t)

weights = word2vec.get_layer("w2v_embedding").get_weights()[0]
vocab = vectorize_layer.get_vocabulary()
out_v = open(os.path.join(args.out, "vectors.tsv"), "w", encoding="utf-8")
out_m = open(os.path.join(args.out, "metadata.tsv"), "w", encoding="utf-8")
for index, word in enumerate(vocab):
    if index == 0:
        continue
    vec = weights[index]
    out_v.write("\t".join([str(x) for x in vec]) + "\n")
    out_m.write(word + "\n")
out_v.close()
out_m.close()
t = _mark("export", t)
PHASES["total"] = time.perf_counter() - _t0
PHASES["pairs"] = float(len(targets))
PHASES["lines"] = float(len(sequences))
print(f"[tutorial] total: {PHASES['total']:.2f} s, {len(targets)} examples", file=sys.stderr)
if args.json:
    with open(args.json, "w") as f:
        json.dump(PHASES, f, indent=2)
