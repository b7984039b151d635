"""Importing Keras and TensorFlow without paying for what this library never uses, and without noise."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from w2vpipe.files import compile_cache_dir

# TensorFlow's start-up lines, harmless and printed by C++ before TF_CPP_MIN_LOG_LEVEL is read (absl logs
# them before absl::InitializeLog(); two of TF's libraries carry their own absl, so each comes twice).
# Anything not listed, real errors and tracebacks among them, is kept.
STARTUP_NOISE = re.compile("|".join((
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine",
    r"port\.cc:\d+\] oneDNN custom operations are on",
    r"cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized to use available CPU",
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$",
    r"Unable to register cu\w+ factory: Attempting to register factory for plugin",
    r"computation_placer\.cc:\d+\] computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
)))


@contextlib.contextmanager
def without_startup_noise() -> Iterator[None]:
    """Send file descriptor 2 (where C++ writes) through a filter for the block: a thread passes on, as
    they come, the lines that are not noise, so even a crash's last words reach stderr. (A writer that
    holds the GIL and writes more than a pipe's 64 KiB at once would block: TensorFlow's start-up writes
    a few hundred bytes.)"""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    read_end, write_end = os.pipe()

    def pass_on() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                if not STARTUP_NOISE.search(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    forwarder = threading.Thread(target=pass_on, name="stderr-filter", daemon=True)
    forwarder.start()
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer gone, the thread reads to its end
        forwarder.join()
        os.close(saved)


def import_tensorflow() -> ModuleType:
    """`import tensorflow`, without its start-up noise."""
    if "tensorflow" not in sys.modules:
        with without_startup_noise():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]


def select_backend(name: str) -> None:
    """Make `name` the Keras backend: Keras reads KERAS_BACKEND once, when it is first imported."""
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = name
    elif keras.backend.backend() != name:
        from w2vpipe.errors import PipelineError

        raise PipelineError(f"train.backend is {name} but this process loaded Keras with "
                            f"{keras.backend.backend()}: train in a new process (python -m pipeline train)")


def cache_compiled_programs(directory: Path | None = None) -> None:
    """Keep JAX's compiled XLA programs on disk (at most 512 MiB, least recently used dropped first): a
    later training of the same shapes, in any project or experiment, loads its program instead of
    compiling it (~1.5-2 s here). The key is the program and the JAX version, so sharing is safe.
    TensorFlow keeps no such cache."""
    if os.environ.get("KERAS_BACKEND") == "jax":
        import jax

        jax.config.update("jax_compilation_cache_dir", str(directory or compile_cache_dir()))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_compilation_cache_max_size", 512 << 20)


def import_keras() -> ModuleType:
    """`import keras`, without its backend's start-up noise and minus its scikit-learn import.

    Keras imports scikit-learn (0.4 s on 2 cores) only for its scikit-learn wrappers, which this
    library never uses, and carries on without them when the import fails. A `None` entry in
    `sys.modules` makes that import fail at once; it is removed again right after, so scikit-learn
    stays importable for everything else.
    """
    if "keras" in sys.modules:
        return sys.modules["keras"]
    block = "sklearn" not in sys.modules
    if block:
        sys.modules["sklearn"] = None  # type: ignore[assignment]
    try:
        with without_startup_noise():
            import keras
    finally:
        if block:
            del sys.modules["sklearn"]
    return keras
