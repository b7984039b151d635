"""The download stage's fetching and checks, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import http.server
import ipaddress
import lzma
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SHAKESPEARE_SHA256, refused_port
from w2vpipe.corpus import (
    SourcePolicy,
    TransientDownloadError,
    _opener,
    check_corpus_text,
    fetch_corpus,
)
from w2vpipe.errors import PipelineError
from w2vpipe.vocabulary import iter_line_blocks

BODY = b"First Citizen:\nBefore we proceed any further, hear me speak.\n"


class CorpusServer(http.server.ThreadingHTTPServer):
    """Serves BODY at /good.txt; /flaky.txt fails with 503 `failures` times first;
    /cut.txt promises more bytes than it sends; /redirect.txt redirects to `redirect_to`;
    anything else is a 404."""

    failures = 0
    requests = 0
    redirect_to = ""


class Handler(http.server.BaseHTTPRequestHandler):
    server: CorpusServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.requests += 1
        if self.path == "/flaky.txt" and self.server.failures > 0:
            self.server.failures -= 1
            self.send_error(503)
            return
        if self.path == "/redirect.txt":
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to)
            self.end_headers()
            return
        if self.path in ("/good.txt", "/flaky.txt", "/cut.txt", "/K%C3%A4se%20und%20Brot.txt"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY) * (2 if self.path == "/cut.txt" else 1)))
            self.end_headers()
            self.wfile.write(BODY)
            return
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def corpus_server(host: str) -> Iterator[CorpusServer]:
    httpd = CorpusServer((host, 0), Handler)  # the system's free port, bound at once
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server() -> Iterator[CorpusServer]:
    with corpus_server("127.0.0.1") as httpd:
        yield httpd


@pytest.fixture
def other_server() -> Iterator[CorpusServer]:
    """A second host: 127.0.0.2, on Linux another loopback address, which a policy may allow apart."""
    with corpus_server("127.0.0.2") as httpd:
        yield httpd


def url(server: CorpusServer, name: str) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/{name}"


def no_leftovers(directory: Path) -> bool:
    return not directory.exists() or not any(directory.iterdir())


def test_download_verifies_checksum_and_names_the_file(server: CorpusServer, tmp_path: Path) -> None:
    result = fetch_corpus(url(server, "good.txt"), tmp_path / "out", sha256=hashlib.sha256(BODY).hexdigest())
    assert result.path == tmp_path / "out" / "good.txt"
    assert result.path.read_bytes() == BODY
    assert (result.source, result.attempts) == ("network", 1)


def test_a_non_ascii_url_is_sent_percent_encoded_and_names_the_file_as_written(server: CorpusServer,
                                                                               tmp_path: Path) -> None:
    result = fetch_corpus(url(server, "Käse und Brot.txt"), tmp_path / "out")
    assert result.path == tmp_path / "out" / "Käse und Brot.txt" and result.path.read_bytes() == BODY


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


def served(monkeypatch: pytest.MonkeyPatch, allowed_dirs: str = "", allowed_hosts: str = "") -> None:
    """This process as a stage of a run started from the served deployment (what the flow sets), with the
    operator's allowances."""
    monkeypatch.setenv("W2V_SERVED_RUN", "1")
    monkeypatch.setenv("W2V_SERVE_ALLOWED_DIRS", allowed_dirs)
    monkeypatch.setenv("W2V_SERVE_ALLOWED_HOSTS", allowed_hosts)


def test_served_runs_read_only_http_and_the_allowed_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    allowed = tmp_path / "corpora"
    allowed.mkdir()
    (allowed / "a.txt").write_text("some words\n")
    policy = SourcePolicy(allowed_dirs=(allowed,))
    policy.check("https://example.com/a.txt")  # public, or unresolvable offline: nothing to reach
    policy.check(str(allowed / "a.txt"))
    policy.check((allowed / "a.txt").as_uri())
    (allowed / "escape.txt").symlink_to("/etc/passwd")
    for outside in ("file:///etc/passwd", str(allowed / "escape.txt"), str(allowed / ".." / "b.txt")):
        with pytest.raises(PipelineError, match="may read only http\\(s\\) URLs and files under"):
            policy.check(outside)
    with pytest.raises(PipelineError, match="scheme 'ftp' is not supported"):
        policy.check("ftp://example.com/a.txt")
    # The download itself applies the policy in a served run's stage, links resolved: the link is refused.
    served(monkeypatch, allowed_dirs=str(allowed))
    assert fetch_corpus(str(allowed / "a.txt"), tmp_path / "out").path.read_text() == "some words\n"
    with pytest.raises(PipelineError, match="is a local file, and runs started from the deployment"):
        fetch_corpus(str(allowed / "escape.txt"), tmp_path / "out2")
    assert no_leftovers(tmp_path / "out2")


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "its host is 127.0.0.1 (loopback)"),
    ("localhost", "its host localhost resolves to 127.0.0.1 (loopback)"),
    ("2130706433", "resolves to 127.0.0.1 (loopback)"),  # 127.0.0.1 as one number
    ("0x7f.1", "resolves to 127.0.0.1 (loopback)"),
    ("[::1]", "its host is ::1 (loopback)"),
    ("[::ffff:127.0.0.1]", "(loopback)"),  # IPv4 inside IPv6
    ("[2002:7f00:1::]", "(loopback)"),  # 6to4 of 127.0.0.1
    ("169.254.169.254", "(link-local)"),  # a cloud's metadata service
    ("10.0.0.5", "(private)"),
    ("192.168.1.1", "(private)"),
    ("100.64.0.1", "(non-global)"),  # carrier-grade NAT
    ("224.0.0.1", "(multicast)"),
    ("240.0.0.1", "(reserved)"),
    ("0.0.0.0", "(unspecified)"),
])
def test_served_runs_fetch_only_from_public_addresses(address: str, reason: str) -> None:
    with pytest.raises(PipelineError) as error:
        SourcePolicy().check(f"http://{address}:8000/secret.txt")
    message = str(error.value)
    assert reason in message and "ask the operator to allow the address in W2V_SERVE_ALLOWED_HOSTS" in message
    assert "\n" not in message
    SourcePolicy().check("http://8.8.8.8/corpus.txt")  # public


def test_the_operator_allows_private_addresses_by_address_or_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("W2V_SERVE_ALLOWED_HOSTS", "10.0.0.5, 127.0.0.0/8")
    policy = SourcePolicy.from_env()
    assert policy.allowed_networks == (ipaddress.ip_network("10.0.0.5/32"), ipaddress.ip_network("127.0.0.0/8"))
    policy.check("http://10.0.0.5/a.txt")
    policy.check("http://localhost/a.txt")
    with pytest.raises(PipelineError, match="10.0.0.6 \\(private\\)"):
        policy.check("http://10.0.0.6/a.txt")
    monkeypatch.setenv("W2V_SERVE_ALLOWED_HOSTS", "127.0.0.1,intranet.example")
    with pytest.raises(PipelineError, match="entry 'intranet.example' is not an IP address or network: list "
                                            "addresses"):
        SourcePolicy.from_env()


def test_a_served_download_refuses_a_redirect_to_a_refused_address(server: CorpusServer, other_server: CorpusServer,
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """127.0.0.2 stands for a public host: allowed, it redirects to 127.0.0.1, which is not."""
    other_server.redirect_to = url(server, "good.txt")
    served(monkeypatch, allowed_hosts="127.0.0.2")
    with pytest.raises(PipelineError) as error:
        fetch_corpus(url(other_server, "redirect.txt"), tmp_path / "out", retries=0)
    assert (f"is refused: it redirects to {url(server, 'good.txt')}, whose host is 127.0.0.1 (loopback)"
            in str(error.value))
    assert (other_server.requests, server.requests) == (1, 0)  # the loopback server was never asked
    assert no_leftovers(tmp_path / "out")
    # Allowed too, the redirect is followed: the policy refuses addresses, not redirects.
    served(monkeypatch, allowed_hosts="127.0.0.2,127.0.0.1")
    assert fetch_corpus(url(other_server, "redirect.txt"), tmp_path / "out").path.read_bytes() == BODY


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_the_connections_peer_address_is_checked_before_anything_is_sent(scheme: str) -> None:
    """Where a name resolved to a public address for the check and to 127.0.0.1 for the connection (DNS
    rebinding), the connection's own peer is refused before a request, or TLS's first message, is sent."""
    received: list[bytes] = []
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(10)

        def accept() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(2)
                try:
                    received.append(connection.recv(1024))
                except TimeoutError:
                    received.append(b"")

        thread = threading.Thread(target=accept)
        thread.start()
        target = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/secret.txt"
        with pytest.raises(PipelineError, match="its connection reached 127.0.0.1 \\(loopback\\)"):
            _opener(target, SourcePolicy()).open(target, timeout=10)
        thread.join()
    assert received == [b""]  # the connection closed with nothing sent
