"""Getting the corpus: download (or mirror, or local copy), checksum, and text checks."""

from __future__ import annotations

import bz2
import codecs
import gzip
import hashlib
import http.client
import io
import ipaddress
import lzma
import os
import re
import shutil
import socket
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import IO, Any, BinaryIO, TextIO

from w2vpipe.errors import PipelineError
from w2vpipe.files import atomic_file

MIRROR_ENV = "W2V_CORPUS_MIRROR"
# Set by the Prefect flow for the stages of a run started from the served deployment: the download then
# applies the operator's SourcePolicy (below), whatever the run's params say.
SERVED_RUN_ENV = "W2V_SERVED_RUN"
# Folders whose files a served deployment's runs may read (os.pathsep-separated); set by the operator.
ALLOWED_DIRS_ENV = "W2V_SERVE_ALLOWED_DIRS"
# Addresses or networks (comma-separated: 127.0.0.1,10.0.0.0/8) that a served deployment's runs may fetch
# from although they are not public; set by the operator.
ALLOWED_HOSTS_ENV = "W2V_SERVE_ALLOWED_HOSTS"
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


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _not_public(address: IPAddress) -> str | None:
    """Why `address` is not a public one (loopback, private, ...), or None when it is."""
    # An IPv6 address that carries an IPv4 one (::ffff:127.0.0.1, 6to4's 2002:7f00:1::) reaches that one.
    embedded = (address.ipv4_mapped or address.sixtofour) if isinstance(address, ipaddress.IPv6Address) else None
    if embedded is not None and (reason := _not_public(embedded)):
        return reason
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if address.is_global else "non-global"


@dataclass(frozen=True)
class SourcePolicy:
    """What corpus.url may name in a run started from the served deployment, where whoever may start a
    run chooses it: http(s) URLs whose host resolves only to public addresses (or ones the operator
    allows), and files inside the operator's folders (links resolved first). It is checked on the URL
    (before the run, and again by the download) and, by the download, on every redirect and on the
    address each connection actually reached, so a name that resolves differently later gains nothing.
    Behind a proxy, the connection reaches the proxy: allow its address."""

    allowed_dirs: tuple[Path, ...] = ()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_env(cls) -> SourcePolicy:
        """The operator's policy: W2V_SERVE_ALLOWED_DIRS and W2V_SERVE_ALLOWED_HOSTS."""
        dirs = tuple(Path(folder) for folder in os.environ.get(ALLOWED_DIRS_ENV, "").split(os.pathsep) if folder)
        networks = []
        for entry in filter(None, (item.strip() for item in os.environ.get(ALLOWED_HOSTS_ENV, "").split(","))):
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise PipelineError(f"{ALLOWED_HOSTS_ENV} entry {entry!r} is not an IP address or network: list "
                                    "addresses (127.0.0.1, 10.0.0.0/24), not names, since what a name resolves to "
                                    "can change") from None
        return cls(dirs, tuple(networks))

    def check(self, url: str) -> None:
        """Fail in one line unless `url` is allowed (its host's addresses resolved now)."""
        scheme = urllib.parse.urlparse(url).scheme
        if scheme in ("http", "https"):
            self._check_host(url, url)
        elif scheme in ("", "file"):
            self.allowed_file(url)
        else:
            raise PipelineError(f"corpus.url scheme {scheme!r} is not supported: use http(s)://, file:// or a path")

    def check_redirect(self, url: str, target: str) -> None:
        """Fail unless a redirect from `url` to `target` stays within the policy (http(s) only)."""
        if urllib.parse.urlparse(target).scheme not in ("http", "https"):
            raise PipelineError(f"corpus.url {url} redirects to {target}, and runs started from the deployment follow "
                                "only http(s) redirects: use the final URL if it is allowed")
        self._check_host(url, target, f"it redirects to {target}, whose host")

    def check_peer(self, url: str, address: str) -> None:
        """Fail unless the address a connection for `url` reached is allowed."""
        self._check_address(url, ipaddress.ip_address(address.partition("%")[0]),
                            f"its connection reached {address}")

    def allowed_file(self, url: str) -> Path:
        """The file `url` names, resolved, if it lies inside an allowed folder."""
        path = local_path(url)
        assert path is not None
        resolved = path.resolve()
        if not any(resolved.is_relative_to(folder.resolve()) for folder in self.allowed_dirs):
            folders = ", ".join(str(folder) for folder in self.allowed_dirs) or "none"
            raise PipelineError(f"corpus.url {url} is a local file, and runs started from the deployment may read only "
                                f"http(s) URLs and files under {ALLOWED_DIRS_ENV} (now: {folders}): use an http(s) "
                                f"URL, or ask the operator to restart `serve` with the folder in {ALLOWED_DIRS_ENV}")
        return resolved

    def _check_host(self, url: str, target: str, whose: str = "its host") -> None:
        parsed = urllib.parse.urlparse(target)
        try:
            host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        except ValueError:
            host = None
        if not host:
            raise PipelineError(f"corpus.url {url}: {'it' if target == url else target} names no valid host and "
                                "port: fix corpus.url")
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            # Nothing can be fetched from a name that does not resolve (offline, the mirror serves the file);
            # should it resolve by the time of the download, every connection's peer is checked then.
            return
        for *_, sockaddr in found:
            address = str(sockaddr[0])
            self._check_address(url, ipaddress.ip_address(address.partition("%")[0]),
                                f"{whose} {host} resolves to {address}" if host != address else f"{whose} is {host}")

    def _check_address(self, url: str, address: IPAddress, how: str) -> None:
        reason = _not_public(address)
        if reason and not any(address in network for network in self.allowed_networks):
            raise PipelineError(f"corpus.url {url} is refused: {how} ({reason}), and runs started from the deployment "
                                "fetch only from public addresses: use a public URL, or ask the operator to allow the "
                                f"address in {ALLOWED_HOSTS_ENV}")


def served_policy() -> SourcePolicy | None:
    """The operator's policy when this process runs a stage of a run started from the served deployment."""
    return SourcePolicy.from_env() if os.environ.get(SERVED_RUN_ENV) else None


class _PeerCheckedConnection(http.client.HTTPConnection):
    """An HTTP connection that checks the address it reached before sending anything. Listed after
    HTTPSConnection in a subclass's bases, its connect() is the one HTTPSConnection's calls for the TCP
    connection, so the check also comes before TLS."""

    policy: SourcePolicy
    url: str

    def connect(self) -> None:
        super().connect()
        try:
            self.policy.check_peer(self.url, self.sock.getpeername()[0])
        except PipelineError:
            self.sock.close()
            raise


class _PeerCheckedHTTPSConnection(http.client.HTTPSConnection, _PeerCheckedConnection):
    pass


def _peer_checked(connection_class: type[_PeerCheckedConnection], policy: SourcePolicy,
                  url: str) -> Callable[..., _PeerCheckedConnection]:
    def connection(host: str, **options: Any) -> _PeerCheckedConnection:
        made = connection_class(host, **options)
        made.policy, made.url = policy, url
        return made
    return connection


class _PeerCheckedHandler:
    """urllib's HTTP or HTTPS handler (the class it is mixed into), its connections peer-checked."""

    def __init__(self, policy: SourcePolicy, url: str) -> None:
        super().__init__()
        self.policy, self.url = policy, url

    def do_open(self, http_class: Any, req: urllib.request.Request, **options: Any) -> http.client.HTTPResponse:
        checked = (_PeerCheckedHTTPSConnection if issubclass(http_class, http.client.HTTPSConnection)
                   else _PeerCheckedConnection)
        return super().do_open(_peer_checked(checked, self.policy, self.url), req, **options)  # type: ignore[misc]


class _PeerCheckedHTTPHandler(_PeerCheckedHandler, urllib.request.HTTPHandler):
    pass


class _PeerCheckedHTTPSHandler(_PeerCheckedHandler, urllib.request.HTTPSHandler):
    pass


class _CheckedRedirectHandler(urllib.request.HTTPRedirectHandler):
    def __init__(self, policy: SourcePolicy, url: str) -> None:
        super().__init__()
        self.policy, self.url = policy, url

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message,
                         newurl: str) -> urllib.request.Request | None:
        try:
            self.policy.check_redirect(self.url, newurl)
        except PipelineError:
            fp.close()
            raise
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(url: str, policy: SourcePolicy | None) -> urllib.request.OpenerDirector:
    """urllib's opener; under a policy, every redirect and every connection's peer address is checked."""
    if policy is None:
        return urllib.request.build_opener()
    return urllib.request.build_opener(_PeerCheckedHTTPHandler(policy, url), _PeerCheckedHTTPSHandler(policy, url),
                                       _CheckedRedirectHandler(policy, url))


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
    errors are retried `retries` times with exponential backoff. In a stage of a run started
    from the served deployment (W2V_SERVED_RUN), `url` must pass the operator's SourcePolicy,
    checked here whatever the flow checked before, and on every redirect and connection.
    """
    policy = served_policy()
    if policy is not None:
        policy.check(url)
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
            attempts = _download_with_retries(url, tmp, retries, backoff_seconds, timeout_seconds, mirror, log,
                                              policy)
        elif parsed.scheme in ("", "file"):
            source = "local"
            # Under a policy, the very file it allowed (links resolved) is the one copied.
            local = policy.allowed_file(url) if policy is not None else local_path(url)
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
    policy: SourcePolicy | None,
) -> int:
    for attempt in range(1, retries + 2):
        try:
            _download_once(url, dest, timeout_seconds, policy)
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


def ascii_url(url: str) -> str:
    """`url` as HTTP sends it: a non-ASCII host in IDNA, other non-ASCII characters percent-encoded (as a
    browser does with `https://de.wikipedia.org/wiki/Käse`)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = parts.netloc if host.isascii() else parts.netloc.replace(host, host.encode("idna").decode("ascii"))
    safe = "/%:@!$&'()*+,;=~-._"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, path=urllib.parse.quote(parts.path, safe=safe),
                                                  query=urllib.parse.quote(parts.query, safe=safe + "?")))


def _download_once(url: str, dest: Path, timeout_seconds: float, policy: SourcePolicy | None) -> None:
    request = urllib.request.Request(ascii_url(url), headers={"User-Agent": "w2vpipe"})
    try:
        with _opener(url, policy).open(request, timeout=timeout_seconds) as response, dest.open("wb") as out:
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
