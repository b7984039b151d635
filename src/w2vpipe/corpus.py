"""Getting the corpus: download (or mirror, or local copy), checksum, and text checks."""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import http.client
import io
import lzma
import os
import re
import shutil
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file

MIRROR_ENV = "W2V_CORPUS_MIRROR"
# Folders whose files a served deployment's runs may read (os.pathsep-separated); set by the operator.
ALLOWED_DIRS_ENV = "W2V_SERVE_ALLOWED_DIRS"
DOWNLOAD_FAILED = "could not download"
CHUNK_BYTES = 1 << 20
# The tutorial's standardization (lowercase, strip ASCII punctuation), as a Python regex.
PUNCTUATION = re.compile(f"[{re.escape(string.punctuation)}]")


class TransientDownloadError(PipelineError):
    """A network failure that may pass: worth retrying."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    source: str  # "network", "mirror" or "local"
    sha256: str
    size: int
    attempts: int


def corpus_filename(url: str) -> str:
    """The file name the corpus is stored under: the last part of the URL or path."""
    name = Path(urllib.parse.urlparse(url).path if "://" in url else url).name
    if name in ("", ".", ".."):
        raise PipelineError(f"corpus.url {url!r} does not end in a file name: point it at a text file")
    return name


def local_path(url: str) -> Path | None:
    """The file a `file://` URL or a plain path names; None for http(s)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("http", "https"):
        return None
    return Path(urllib.request.url2pathname(parsed.path) if parsed.scheme == "file" else url)


def check_allowed_source(url: str, allowed_dirs: list[Path]) -> None:
    """Fail unless `url` is http(s) or a file inside one of `allowed_dirs` (links resolved first)."""
    path = local_path(url)
    if path is None:
        return
    resolved = path.resolve()
    if not any(resolved.is_relative_to(folder.resolve()) for folder in allowed_dirs):
        folders = ", ".join(str(folder) for folder in allowed_dirs) or "none"
        raise PipelineError(f"corpus.url {url} is a local file, and runs started from the deployment may read only "
                            f"http(s) URLs and files under {ALLOWED_DIRS_ENV} (now: {folders}): use an http(s) URL, "
                            f"or ask the operator to restart `serve` with the folder in {ALLOWED_DIRS_ENV}")


def allowed_dirs_from_env() -> list[Path]:
    return [Path(folder) for folder in os.environ.get(ALLOWED_DIRS_ENV, "").split(os.pathsep) if folder]


def fetch_corpus(
    url: str,
    dest_dir: Path,
    sha256: str | None = None,
    mirror: Path | None = None,
    retries: int = 3,
    backoff_seconds: float = 1.0,
    timeout_seconds: float = 60.0,
    log: Callable[[str], None] = print,
) -> FetchResult:
    """Fetch `url` into `dest_dir`, verify it, and only then give it its final name.

    A mirror folder holding a file of the same name wins over the network (it is how the
    pipeline runs offline); `file://` URLs and plain paths are copied. Transient network
    errors are retried `retries` times with exponential backoff.
    """
    name = corpus_filename(url)
    final = dest_dir / name
    parsed = urllib.parse.urlparse(url)
    with atomic_file(final) as tmp:
        attempts = 1
        if mirror is not None and (mirror / name).is_file():
            source = "mirror"
            shutil.copyfile(mirror / name, tmp)
        elif parsed.scheme in ("http", "https"):
            source = "network"
            attempts = _download_with_retries(url, tmp, retries, backoff_seconds, timeout_seconds, mirror, log)
        elif parsed.scheme in ("", "file"):
            source = "local"
            local = local_path(url)
            assert local is not None
            if local.is_dir():
                raise PipelineError(f"corpus.url {local} is a folder: point it at a text file inside it")
            if not local.is_file():
                raise PipelineError(f"corpus file {local} does not exist: fix corpus.url in params.yaml")
            shutil.copyfile(local, tmp)
        else:
            raise PipelineError(
                f"corpus.url scheme {parsed.scheme!r} is not supported: use http(s)://, file:// or a path"
            )
        digest = file_sha256(tmp)
        if sha256 is not None and digest != sha256.lower():
            raise PipelineError(
                f"checksum mismatch for {name} from {source}: sha256 is {digest}, params.yaml corpus.sha256 "
                f"expects {sha256.lower()}: fix corpus.url, or set corpus.sha256 to the new file's checksum"
            )
        check_corpus_text(tmp, display_name=name)
        size = tmp.stat().st_size
    return FetchResult(path=final, source=source, sha256=digest, size=size, attempts=attempts)


def _download_with_retries(
    url: str,
    dest: Path,
    retries: int,
    backoff_seconds: float,
    timeout_seconds: float,
    mirror: Path | None,
    log: Callable[[str], None],
) -> int:
    for attempt in range(1, retries + 2):
        try:
            _download_once(url, dest, timeout_seconds)
            return attempt
        except TransientDownloadError as error:
            if attempt > retries:
                where = f"{MIRROR_ENV}={mirror} has no file of that name" if mirror else f"{MIRROR_ENV} is not set"
                raise TransientDownloadError(
                    f"{DOWNLOAD_FAILED} {url} after {attempt} attempts ({error}); {where}: "
                    f"check the network, or set {MIRROR_ENV} to a folder holding {corpus_filename(url)}"
                ) from error
            delay = backoff_seconds * 2 ** (attempt - 1)
            log(f"download attempt {attempt} failed ({error}); retrying in {delay:.1f} s")
            time.sleep(delay)
    raise AssertionError("unreachable")


def _download_once(url: str, dest: Path, timeout_seconds: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "w2vpipe"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response, dest.open("wb") as out:
            expected = response.headers.get("Content-Length")
            received = 0
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                received += len(chunk)
            if expected is not None and received != int(expected):
                raise TransientDownloadError(f"connection closed after {received} of {expected} bytes")
    except urllib.error.HTTPError as error:
        if error.code == 429 or error.code >= 500:
            raise TransientDownloadError(f"HTTP {error.code}") from error
        raise PipelineError(f"HTTP {error.code} {error.reason} for {url}: fix corpus.url in params.yaml") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise TransientDownloadError(f"{type(error).__name__}: {reason}") from error


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# Compressed corpora are read as they are stored, streamed: the checksum stays the file's own.
COMPRESSIONS: dict[bytes, tuple[str, Callable[[Path], BinaryIO]]] = {
    b"\x1f\x8b": ("gzip", lambda path: gzip.open(path, "rb")),
    b"BZh": ("bz2", lambda path: bz2.open(path, "rb")),
    b"\xfd7zXZ\x00": ("xz", lambda path: lzma.open(path, "rb")),
}


@contextmanager
def open_corpus(path: Path, display_name: str | None = None) -> Iterator[BinaryIO]:
    """The corpus's bytes, decompressed if it is a gzip, bz2 or xz file; a damaged archive is one line."""
    with path.open("rb") as probe:
        head = probe.read(6)
    compression, opener = next(((name, opener) for magic, (name, opener) in COMPRESSIONS.items()
                                if head.startswith(magic)), (None, lambda path: path.open("rb")))
    try:
        with opener(path) as stream:
            yield stream
    except (OSError, EOFError, lzma.LZMAError) as error:
        if compression is None:
            raise
        raise PipelineError(f"corpus {display_name or path} is a damaged {compression} file ({error}): fetch it "
                            "again (dvc repro -f download) or fix corpus.url") from error


@contextmanager
def open_corpus_text(path: Path) -> Iterator[TextIO]:
    """The corpus as text: decompressed, UTF-8, a byte-order mark dropped, line ends kept as they are."""
    with open_corpus(path) as stream:
        yield io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def check_corpus_text(path: Path, display_name: str | None = None) -> None:
    """Fail unless `path` is UTF-8 text (compressed or not) holding at least one word after
    standardization.

    Reads in chunks, so memory stays flat for any corpus size; a decoding error names the
    line, column and byte offset (in the decompressed text).
    """
    name = display_name or str(path)
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    offset = 0
    line = 1
    line_start = 0
    has_word = False
    with open_corpus(path, name) as file:
        while True:
            chunk = file.read(CHUNK_BYTES)
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                # error.start is relative to the decoder's buffer: any bytes it held back from the
                # previous chunk (an incomplete sequence) come first.
                held = len(error.object) - len(chunk)
                position = offset - held + error.start
                before = chunk[: max(0, error.start - held)]
                line_at = line + before.count(b"\n")
                last_newline = before.rfind(b"\n")
                column_start = offset + last_newline + 1 if last_newline >= 0 else line_start
                raise PipelineError(
                    f"corpus {name} is not UTF-8: byte 0x{error.object[error.start]:02x} at line {line_at}, "
                    f"column {position - column_start + 1} (byte offset {position}): "
                    f"re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
                ) from error
            if not has_word and PUNCTUATION.sub("", text.lower()).split():
                has_word = True
            newlines = chunk.count(b"\n")
            if newlines:
                line += newlines
                line_start = offset + chunk.rfind(b"\n") + 1
            offset += len(chunk)
            if not chunk:
                break
    if offset == 0:
        raise PipelineError(f"corpus {name} is empty: point corpus.url at a text file with words in it")
    if not has_word:
        raise PipelineError(
            f"corpus {name} has no words once lowercased and stripped of punctuation: "
            f"point corpus.url at a text corpus"
        )


def mirror_from_env() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None
