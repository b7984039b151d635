"""The download stage's fetching and checks, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import http.server
import lzma
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SHAKESPEARE_SHA256, refused_port
from w2vpipe.corpus import TransientDownloadError, check_allowed_source, check_corpus_text, fetch_corpus
from w2vpipe.errors import PipelineError
from w2vpipe.vocabulary import iter_line_blocks

BODY = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"


class CorpusServer(http.server.ThreadingHTTPServer):
    """Serves BODY at /good.txt; /flaky.txt fails with 503 `failures` times first;
    /cut.txt promises more bytes than it sends; anything else is a 404."""

    failures = 0
    requests = 0


class Handler(http.server.BaseHTTPRequestHandler):
    server: CorpusServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests += 1
        if self.path == "/flaky.txt" and self.server.failures > 0:
            self.server.failures -= 1
            self.send_error(503)
            return
        if self.path in ("/good.txt", "/flaky.txt", "/cut.txt"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) * (2 if self.path == "/cut.txt" else 1)))
            self.end_headers()
            self.wfile.write(BODY)
            return
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[CorpusServer]:
    httpd = CorpusServer(("127.0.0.1", 0), Handler)  # the system's free port, bound at once
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(server: CorpusServer, name: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{name}"


def no_leftovers(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def test_download_verifies_checksum_and_names_the_file(server: CorpusServer, tmp_path: Path) -> None:
    result = fetch_corpus(url(server, "good.txt"), tmp_path / "out", sha256=hashlib.sha256(BODY).hexdigest())
    assert result.path == tmp_path / "out" / "good.txt"
    assert result.path.read_bytes() == BODY
    assert (result.source, result.attempts) == ("network", 1)


def test_checksum_mismatch_fails_and_leaves_nothing(server: CorpusServer, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="checksum mismatch .* set corpus.sha256"):
        fetch_corpus(url(server, "good.txt"), tmp_path / "out", sha256="0" * 64)
    assert no_leftovers(tmp_path / "out")


def test_transient_errors_are_retried_with_backoff(server: CorpusServer, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []
    monkeypatch.setattr("w2vpipe.corpus.time.sleep", delays.append)  # the waits, recorded instead of slept
    server.failures = 2
    result = fetch_corpus(url(server, "flaky.txt"), tmp_path / "out", backoff_seconds=0.25, log=lambda _: None)
    assert result.attempts == 3
    assert delays == [0.25, 0.5]  # exponential backoff
    assert result.path.read_bytes() == BODY


def test_interrupted_download_is_retried_then_fails_cleanly(server: CorpusServer, tmp_path: Path) -> None:
    with pytest.raises(TransientDownloadError, match=r"closed after \d+ of \d+ bytes.*W2V_CORPUS_MIRROR"):
        fetch_corpus(url(server, "cut.txt"), tmp_path / "out", retries=2, backoff_seconds=0.01, log=lambda _: None)
    assert server.requests == 3
    assert no_leftovers(tmp_path / "out")


def test_missing_file_is_not_retried(server: CorpusServer, tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="HTTP 404 .* fix corpus.url"):
        fetch_corpus(url(server, "absent.txt"), tmp_path / "out", backoff_seconds=0.01)
    assert server.requests == 1


def test_no_network_and_no_mirror_says_how_to_fix(tmp_path: Path) -> None:
    with refused_port() as port, pytest.raises(PipelineError) as error:
        fetch_corpus(f"http://127.0.0.1:{port}/shakespeare.txt", tmp_path / "out", retries=1, backoff_seconds=0.01,
                     log=lambda _: None)
    assert "could not download" in str(error.value)
    assert "set W2V_CORPUS_MIRROR to a folder holding shakespeare.txt" in str(error.value)


def test_mirror_serves_offline_with_checksum(shakespeare: Path, tmp_path: Path) -> None:
    with refused_port() as port:
        result = fetch_corpus(f"http://127.0.0.1:{port}/shakespeare.txt", tmp_path / "out", sha256=SHAKESPEARE_SHA256,
                              mirror=shakespeare.parent)
    assert result.source == "mirror"
    assert result.size == 1_115_394


def test_file_urls_and_paths_are_copied(small_corpus: Path, tmp_path: Path) -> None:
    for source in (small_corpus.as_uri(), str(small_corpus)):
        result = fetch_corpus(source, tmp_path / "out")
        assert result.source == "local"
        assert result.path.read_bytes() == small_corpus.read_bytes()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"!!! ... ???\n--\n", "has no words"),
        (b"good line\nsecond \xff line\n", r"not UTF-8: byte 0xff at line 2, column 8 \(byte offset 17\)"),
    ],
)
def test_bad_text_is_refused_with_its_place(tmp_path: Path, content: bytes, message: str) -> None:
    corpus = tmp_path / "bad.txt"
    corpus.write_bytes(content)
    with pytest.raises(PipelineError, match=message):
        check_corpus_text(corpus)
    with pytest.raises(PipelineError, match=message):
        fetch_corpus(str(corpus), tmp_path / "out")
    assert no_leftovers(tmp_path / "out")


def test_non_utf8_position_is_right_across_chunks(tmp_path: Path) -> None:
    corpus = tmp_path / "big.txt"
    line = "é" * 99 + "\n"  # 199 bytes a line, with multi-byte characters split across 1 MiB chunks
    data = (line * 10_000).encode()
    corpus.write_bytes(data + b"abc\xfe\n")
    with pytest.raises(PipelineError, match=rf"line 10001, column 4 \(byte offset {len(data) + 3}\)"):
        check_corpus_text(corpus)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress, lambda data: data],
                         ids=["gzip", "bz2", "xz", "plain"])
def test_compressed_corpora_are_read_as_text_and_a_bom_is_dropped(tmp_path: Path, compress: Any) -> None:
    text = "\ufeffThe king is dead.\r\nLong live the queen!\n\nfinis"
    corpus = tmp_path / "corpus.txt.x"
    corpus.write_bytes(compress(text.encode("utf-8")))
    fetched = fetch_corpus(str(corpus), tmp_path / "out")
    assert fetched.sha256 == hashlib.sha256(corpus.read_bytes()).hexdigest()  # the file as stored
    assert list(iter_line_blocks(fetched.path, 10)) == [["The king is dead.", "Long live the queen!", "finis"]]


def test_a_damaged_archive_a_folder_and_a_nameless_url_get_one_line(tmp_path: Path) -> None:
    damaged = tmp_path / "corpus.txt.gz"
    archive = gzip.compress(" ".join(f"word{number}" for number in range(50_000)).encode())
    damaged.write_bytes(archive[: len(archive) // 2])  # cut off mid-stream
    with pytest.raises(PipelineError, match="is a damaged gzip file .*: fetch it again"):
        fetch_corpus(str(damaged), tmp_path / "out")
    with pytest.raises(PipelineError, match="is a folder: point it at a text file inside it"):
        fetch_corpus(str(tmp_path), tmp_path / "out")
    with pytest.raises(PipelineError, match="does not end in a file name"):
        fetch_corpus("https://example.com/data/..", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_params_yaml_syntax_errors_name_line_and_column(tmp_path: Path) -> None:
    from w2vpipe.params import load_params

    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  epochs: 5\n  window: [2, 3\n")
    with pytest.raises(PipelineError, match=r"not valid YAML at line \d+, column \d+ \(.+\): fix its syntax"):
        load_params(bad)


def test_served_runs_read_only_http_and_the_allowed_folders(tmp_path: Path) -> None:
    allowed = tmp_path / "corpora"
    allowed.mkdir()
    (allowed / "a.txt").write_text("some words\n")
    check_allowed_source("https://example.com/a.txt", [])
    check_allowed_source(str(allowed / "a.txt"), [allowed])
    check_allowed_source((allowed / "a.txt").as_uri(), [allowed])
    (allowed / "escape.txt").symlink_to("/etc/passwd")
    for outside in ("file:///etc/passwd", str(allowed / "escape.txt"), str(allowed / ".." / "b.txt")):
        with pytest.raises(PipelineError, match="may read only http\\(s\\) URLs and files under"):
            check_allowed_source(outside, [allowed])
