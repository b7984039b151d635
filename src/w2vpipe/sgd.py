"""word2vec.c's training step in `keras.ops`, and one compiled loop of many steps, on any Keras backend.

The step is word2vec.c's: every (input, context) score's sigmoid error, times the learning rate, moves
the input vector along the context vectors and each context vector along the input vector, all from
the batch's old values (one summed-loss gradient step). The gradients are written out rather than
taken by autodiff, so each update touches only the rows the batch uses, on every backend (JAX's
autodiff of a gather updates the whole table), and the code is the same everywhere: only
`compile_for_backend` knows the backend. Negatives come from a counter-based hash of (seed, step, slot), so a step's
draws depend on nothing else: a resumed training, or another backend, draws the same words.

A call runs `steps_per_call` steps on a block of `steps_per_call` batches already on the device; the
embedding tables go in and come out (JAX donates them: updated in place).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from w2vpipe.backend import import_keras
from w2vpipe.errors import PipelineError
from w2vpipe.model import avoid_true_word
from w2vpipe.tables import StepConfig

keras = import_keras()
from keras import ops  # noqa: E402

Tables = tuple[Any, Any]  # (input vectors, output vectors): (vocab, dim) each

# lowbias32 (Chris Wellons's integer hash), in int32 arithmetic: products wrap alike on every backend,
# and a logical shift is an arithmetic one masked.
HASH_MULTIPLIERS = (0x7FEB352D, 0x846CA68B - (1 << 32))


def _shift_xor(x: Any, bits: int) -> Any:
    return ops.bitwise_xor(x, ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1))


def hash32(x: Any) -> Any:
    x = _shift_xor(x, 16) * HASH_MULTIPLIERS[0]
    x = _shift_xor(x, 15) * HASH_MULTIPLIERS[1]
    return _shift_xor(x, 16)


def learning_rate_at(step: Any, learning_rate: Any, total_steps: Any) -> Any:
    """Keras's PolynomialDecay(rate, total_steps, end=rate * 1e-4), the schedule `model.fit` used."""
    end = learning_rate * 1e-4
    done = ops.minimum(ops.cast(step, "float32") / ops.maximum(total_steps, 1.0), 1.0)
    return (learning_rate - end) * (1.0 - done) + end


def draw_noise(noise_table: Any, step: Any, count: int, seed: Any) -> Any:
    """`count` noise words for `step`: uniform slots of the unigram table, by a hash of (seed, step, slot)."""
    stream = hash32(hash32(ops.cast(seed, "int32") + 0x5BD1E995) + ops.cast(step, "int32"))
    slots = hash32(ops.arange(count, dtype="int32") + stream)
    return ops.take(noise_table, ops.mod(ops.bitwise_and(slots, 0x7FFFFFFF), ops.shape(noise_table)[0]))


def draw_negatives(positives: Any, noise_table: Any, step: Any, seed: Any, config: StepConfig) -> Any:
    """`num_ns` noise words per row, none equal to its row's true word, as the model draws them."""
    negatives = ops.reshape(draw_noise(noise_table, step, config.batch_size * config.num_ns, seed),
                            (config.batch_size, config.num_ns))
    return avoid_true_word(negatives, positives, config.vocab_size)


def input_vectors(table: Any, inputs: Any) -> tuple[Any, Any]:
    """(the vectors that score the contexts, the mask of window words): skip-gram's input word's vector,
    or CBOW's mean over its window (padding, id 0, left out)."""
    vectors = ops.take(table, inputs, axis=0)
    if len(inputs.shape) == 1:
        return vectors, None
    present = ops.cast(ops.expand_dims(inputs != 0, -1), vectors.dtype)
    return ops.sum(vectors * present, axis=1) / ops.maximum(ops.sum(present, axis=1), 1.0), present


def scores(tables: Tables, inputs: Any, contexts: Any) -> Any:
    """Logits (batch, contexts): the true context first, then the negatives."""
    vectors, _ = input_vectors(tables[0], inputs)
    return ops.einsum("bd,bcd->bc", vectors, ops.take(tables[1], contexts, axis=0))


def loss_and_correct(logits: Any) -> tuple[Any, Any]:
    """word2vec.c's objective summed over the batch (sigmoid cross-entropy, the true context labelled 1,
    the rest 0), and how many rows score their true context highest (Keras's categorical accuracy)."""
    loss = ops.sum(ops.softplus(-logits[:, 0])) + ops.sum(ops.softplus(logits[:, 1:]))
    correct = ops.sum(ops.cast(ops.argmax(logits, axis=1) == 0, "float32"))
    return loss, correct


def add_input_updates(input_table: Any, inputs: Any, present: Any, update: Any) -> Any:
    """`update` (batch, dim) added to each row's input word, or to each word of its CBOW window (word2vec.c
    gives every window word the whole update; padding, masked by `present`, gets none)."""
    if present is None:
        rows, updates = ops.expand_dims(inputs, -1), update
    else:
        rows = ops.reshape(inputs, (-1, 1))
        updates = ops.reshape(ops.expand_dims(update, 1) * present, (-1, input_table.shape[1]))
    return ops.scatter_update(input_table, rows, updates, reduction="add")


def sgd_step(tables: Tables, inputs: Any, contexts: Any, rate: Any) -> tuple[Tables, Any, Any]:
    """One step on a batch; (new tables, summed loss, correct rows). CBOW gives each window word the
    whole error of the window's mean, as word2vec.c and gensim do."""
    input_table, output_table = tables
    vectors, present = input_vectors(input_table, inputs)
    context_vectors = ops.take(output_table, contexts, axis=0)  # (batch, contexts, dim)
    logits = ops.einsum("bd,bcd->bc", vectors, context_vectors)
    labels = ops.cast(ops.arange(logits.shape[1]) == 0, logits.dtype)
    error = (labels - ops.sigmoid(logits)) * rate  # the descent direction of each score, scaled
    input_update = ops.einsum("bc,bcd->bd", error, context_vectors)
    context_update = ops.expand_dims(error, -1) * ops.expand_dims(vectors, 1)
    input_table = add_input_updates(input_table, inputs, present, input_update)
    output_table = ops.scatter_update(output_table, ops.reshape(contexts, (-1, 1)),
                                      ops.reshape(context_update, (-1, input_table.shape[1])), reduction="add")
    loss, correct = loss_and_correct(logits)
    return (input_table, output_table), loss, correct


def shared_negatives_step(tables: Tables, inputs: Any, positives: Any, negatives: Any, rate: Any,
                          num_ns: int) -> tuple[Tables, Any, Any]:
    """One step whose rows share `negatives` (BlazingText; Ji et al. 2016): the negative scores are one
    matrix product and the negative updates touch those rows only. Each negative term is weighted by
    num_ns / len(negatives), so a row's expected step is word2vec.c's; a shared negative equal to a row's
    true word is left out of that row. Accuracy is over the first `num_ns` negatives, as per row."""
    input_table, output_table = tables
    vectors, present = input_vectors(input_table, inputs)  # (batch, dim)
    positive_vectors = ops.take(output_table, positives, axis=0)  # (batch, dim)
    negative_vectors = ops.take(output_table, negatives, axis=0)  # (shared, dim)
    positive_logits = ops.sum(vectors * positive_vectors, axis=1)
    negative_logits = ops.matmul(vectors, ops.transpose(negative_vectors))  # (batch, shared)
    weight = num_ns / negatives.shape[0]
    counted = ops.cast(ops.expand_dims(positives, 1) != ops.expand_dims(negatives, 0), vectors.dtype) * weight
    positive_error = (1.0 - ops.sigmoid(positive_logits)) * rate
    negative_error = -ops.sigmoid(negative_logits) * counted * rate
    input_update = ops.expand_dims(positive_error, 1) * positive_vectors + ops.matmul(negative_error, negative_vectors)
    input_table = add_input_updates(input_table, inputs, present, input_update)
    output_rows = ops.concatenate([positives, negatives])
    output_updates = ops.concatenate([ops.expand_dims(positive_error, 1) * vectors,
                                      ops.matmul(ops.transpose(negative_error), vectors)])
    output_table = ops.scatter_update(output_table, ops.expand_dims(output_rows, -1), output_updates, reduction="add")
    loss = ops.sum(ops.softplus(-positive_logits)) + ops.sum(ops.softplus(negative_logits) * counted)
    correct = ops.sum(ops.cast(positive_logits > ops.max(negative_logits[:, :num_ns], axis=1), "float32"))
    return (input_table, output_table), loss, correct


def batch_at(block: Any, index: Any) -> Any:
    """Batch `index` of a (steps, batch[, columns]) block."""
    return ops.take(block, index, axis=0)


Compiler = Callable[[Callable[..., Any], bool], Callable[..., Any]]  # (function, donate its first argument)
StepsCompiler = Callable[[Callable[..., Any]], Callable[..., Any]]  # compiles train_call's function, tables donated


def train_call(config: StepConfig, compiler: StepsCompiler | None = None) -> Callable[..., tuple[Tables, Any, Any]]:
    """(tables, noise table, block inputs, block outputs, first step) -> (tables, summed loss, correct):
    `steps_per_call` steps over a block's batches (shaped (steps, batch[, columns])), compiled for the
    backend (or by `compiler`, which may place it on several devices: `w2vpipe.distributed`). The rate,
    its schedule and the seed are arguments, not constants of the program, so one compiled program (and
    JAX's cache of it) serves every run of the same shapes."""
    if config.hogwild:
        raise ValueError("hogwild updates train on the CPU's cores (w2vpipe.cpu_sgd), not the keras.ops loop")

    def run(tables: Tables, noise_table: Any, inputs: Any, outputs: Any, first_step: Any, schedule: Any,
            seed: Any) -> Any:
        def body(index: Any, carry: Any) -> Any:
            tables, loss_total, correct_total = carry
            step = first_step + index
            batch_inputs, batch_outputs = batch_at(inputs, index), batch_at(outputs, index)
            rate = learning_rate_at(step, schedule[0], schedule[1])
            if config.shared_negatives:
                negatives = draw_noise(noise_table, step, config.shared_negatives, seed)
                tables, loss, correct = shared_negatives_step(tables, batch_inputs, batch_outputs[:, 0], negatives,
                                                              rate, config.num_ns)
            else:
                if config.num_ns:
                    positives = batch_outputs[:, :1]
                    batch_outputs = ops.concatenate(
                        [positives, draw_negatives(positives, noise_table, step, seed, config)], axis=1)
                tables, loss, correct = sgd_step(tables, batch_inputs, batch_outputs, rate)
            return tables, loss_total + loss, correct_total + correct

        zero = ops.zeros((), "float32")
        return ops.fori_loop(0, config.steps_per_call, body, (tuple(tables), zero, zero))

    compiled = compiler(run) if compiler else compile_for_backend(run, True)
    schedule = ops.convert_to_tensor([config.learning_rate, float(config.total_steps)], "float32")
    seed = ops.convert_to_tensor(config.seed, "int32")

    def call(tables: Tables, noise_table: Any, inputs: Any, outputs: Any, first_step: int) -> Any:
        return compiled(tables, noise_table, inputs, outputs, ops.convert_to_tensor(first_step, "int32"), schedule,
                        seed)

    return call


def evaluate_call(batches: int, compiler: Compiler | None = None) -> Callable[..., tuple[Any, Any]]:
    """(tables, inputs, outputs) -> (summed loss, correct rows) over `batches` batches of held-out
    examples (their negatives stored; shaped (batches, batch[, columns])), compiled."""

    def run(tables: Tables, inputs: Any, outputs: Any) -> Any:
        def body(index: Any, carry: Any) -> Any:
            logits = scores(tables, batch_at(inputs, index), batch_at(outputs, index))
            loss, correct = loss_and_correct(logits)
            return carry[0] + loss, carry[1] + correct

        zero = ops.zeros((), "float32")
        return ops.fori_loop(0, batches, body, (zero, zero))

    return (compiler or compile_for_backend)(run, False)


def compile_for_backend(function: Callable[..., Any], donate_first: bool) -> Callable[..., Any]:
    """The one backend-specific line: XLA compilation, by JAX or by TensorFlow."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function, donate_argnums=(0,) if donate_first else ())
    if backend == "tensorflow":
        from w2vpipe.backend import import_tensorflow

        return import_tensorflow().function(function, jit_compile=True, reduce_retracing=True)
    raise PipelineError(f"the Keras backend {backend!r} cannot run this training: set train.backend to jax or "
                        f"tensorflow")
