"""Numba's settings for this library, made before numba loads: import this module before `import numba`.

- Where compiled code lives: the user's cache of compiled programs, keyed by the source file's content
  (`SourceContentLocator`). Numba's own locators key it by the file's path and modification time, so every
  copy of the checkout (each `dvc exp run --temp`, a Prefect run, a test's scratch project) would compile
  the kernels again (~10 s).
- Which CPU the code is compiled for (`pin_code_target`), so that reordered sums come out the same.
- How idle threads wait (`sleep_at_barriers`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any


def pin_code_target() -> None:
    """Compile for one CPU model on every x86-64 machine with AVX2 and FMA (Haswell's instructions, which
    AVX-512 machines also run), so that the reordered sums come out the same there; and keep the compiled
    code in the user's cache of compiled programs, keyed by the source's content, so that copies of the
    checkout share it. Numba reads these settings when it is first imported."""
    from w2vpipe.files import compile_cache_dir

    os.environ.setdefault("NUMBA_CACHE_DIR", str(compile_cache_dir() / "numba"))
    os.environ.setdefault("NUMBA_CACHE_LOCATOR_CLASSES", "w2vpipe.numba_cache.SourceContentLocator,"
                          "UserProvidedCacheLocator,InTreeCacheLocator,UserWideCacheLocator")
    if "NUMBA_CPU_NAME" not in os.environ:
        try:
            flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
        except (OSError, StopIteration):
            return
        if "avx2" in flags and "fma" in flags:
            os.environ["NUMBA_CPU_NAME"] = "haswell"
            # Haswell's own instructions, not the host's: numba otherwise adds the host's features to the named
            # CPU, and on an AVX-512 machine the wider vectors reorder the sums (other last bits than elsewhere).
            os.environ.setdefault("NUMBA_CPU_FEATURES", "")
            if "numba" in sys.modules:
                settle_loaded_numba()


def settle_loaded_numba() -> None:
    """A program that imported numba before this library: numba reads the settings again, which holds while it
    has compiled nothing; once it has, its code target is the host's, and the tables would not be the same
    bytes as elsewhere."""
    from numba.core import config, registry

    config.reload_config()
    if "_toplevel_target_context" in vars(registry.cpu_target) and \
            registry.cpu_target.target_context.codegen()._tm_features != config.CPU_FEATURES:
        raise ImportError("numba compiled code for this machine's CPU before w2vpipe pinned the code target that "
                          "keeps trained tables the same bytes on every machine: import w2vpipe before compiling "
                          "with numba, or set NUMBA_CPU_NAME=haswell and NUMBA_CPU_FEATURES= (empty) in the "
                          "environment")


def sleep_at_barriers() -> None:
    """Cores that finish their share of a step first wait for the others asleep, not spinning (libgomp, numba's
    OpenMP threads, spins ~300,000 rounds by default). A spinning core takes the CPU from the thread drawing
    the next shard's examples, and from the step's other cores when the machine runs more threads than it has
    cores; at 166k words x 300 on 2 cores the train stage's fit took 50-58 s this way against 63-96 s
    spinning. libgomp reads the setting when numba first starts its threads; a user's own setting stands."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


pin_code_target()
sleep_at_barriers()

from numba.core import config  # noqa: E402
from numba.core.caching import UserProvidedCacheLocator  # noqa: E402


class SourceContentLocator(UserProvidedCacheLocator):
    """Compiled code under NUMBA_CACHE_DIR in a folder named by the source's sha256, valid while the
    source's bytes are the same, wherever the file lies."""

    def __init__(self, py_func: Any, py_file: str) -> None:
        super().__init__(py_func, py_file)
        self._digest = hashlib.sha256(Path(py_file).read_bytes()).hexdigest()
        self._cache_path = os.path.join(config.CACHE_DIR, f"{Path(py_file).stem}-{self._digest[:16]}")

    def get_source_stamp(self) -> str:
        return self._digest
