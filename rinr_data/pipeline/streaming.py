"""Fetch shards from local paths, http(s) or fsspec URLs, with an on-disk cache, retries with backoff and a deadline."""

from __future__ import annotations

import hashlib
import http.client
import io
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from ..errors import FetchError


@dataclass(frozen=True)
class FetchPolicy:
    """How remote shards are fetched: cache folder (None: keep in memory), retries after the first attempt, the first
    backoff (doubled after each retry), the timeout of one connection or read, and the deadline of a whole shard
    (seconds from its first request to its last byte, backoffs included; None: no deadline)."""

    cache_dir: str | None = None
    retries: int = 6
    backoff: float = 0.5
    timeout: float = 30.0
    # A server that stalls never trips `timeout` if it drips a byte now and then: the deadline bounds every fetch, so
    # a bad link fails a shard (handled by on_error) instead of hanging a training run. An hour is ~3.6 GB at 1 MB/s.
    deadline: float | None = 3600.0


def is_remote(url: str) -> bool:
    """True for URLs with a scheme other than file://."""
    scheme = urlparse(str(url)).scheme
    return len(scheme) > 1 and scheme != "file"


def cache_path(url: str, cache_dir: str | Path) -> Path:
    """Where a remote shard is cached: a hash of the URL keeps names unique, the base name keeps them readable."""
    digest = hashlib.sha1(url.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{digest}-{os.path.basename(urlparse(url).path) or 'shard'}"


_CHUNK = 1 << 20
_TAR_END = 1024  # two zero blocks end every tar


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """Where a 206 response's body starts in the file (None when its Content-Range says nothing usable)."""
    found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range") or "")
    return int(found.group(1)) if found else None


def _looks_complete(sink: BinaryIO, url: str) -> bool:
    """For a body without a length: a tar must end with its end blocks (a cut one rarely does); other files pass."""
    if not urlparse(url).path.endswith(".tar"):
        return True
    end = sink.tell()
    if end < _TAR_END:
        return False
    sink.seek(end - _TAR_END)
    tail = sink.read(_TAR_END)
    sink.seek(end)
    return not any(tail)


def _http_download(url: str, sink: BinaryIO, policy: FetchPolicy) -> None:
    """Download into `sink` (readable too), resuming with a Range request after a dropped connection, retrying with
    exponential backoff, and giving up with a FetchError naming the URL after the retries or past the deadline."""
    started = time.monotonic()

    def left() -> float:
        return math.inf if policy.deadline is None else policy.deadline - (time.monotonic() - started)

    def past_deadline(attempts: int) -> FetchError:
        return FetchError(
            f"{url}: not complete within the {policy.deadline:g} s deadline "
            f"({sink.tell()} bytes after {attempts} attempt(s))"
        )

    expected: int | None = None
    attempt = 0
    while True:
        if left() <= 0:
            raise past_deadline(attempt)
        have = sink.tell()
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=min(policy.timeout, left())) as response:
                if have and (response.status != 206 or _range_start(response) != have):
                    # The server ignored the range or resumed elsewhere: start over rather than splice wrong bytes.
                    sink.seek(0)
                    sink.truncate()
                    expected = None
                    if response.status == 206:
                        raise ConnectionError(f"asked to resume at byte {have}, the server sent another range")
                    have = 0
                # http.client's parse of Content-Length (None when absent, chunked or not a number)
                if response.length is not None and expected is None:
                    expected = have + response.length
                while chunk := response.read1(_CHUNK):
                    sink.write(chunk)
                    if left() <= 0:
                        raise past_deadline(attempt + 1)
                chunked = response.chunked
            if expected is not None:
                if sink.tell() >= expected:
                    return
                raise ConnectionError(f"connection closed after {sink.tell()} of {expected} bytes")
            # Chunked bodies end with a terminating chunk (a cut raises IncompleteRead); without a length or chunks, a
            # closed connection is the only end there is, so a cut can only show in the content.
            if chunked or _looks_complete(sink, url):
                return
            raise ConnectionError(f"connection closed after {sink.tell()} bytes without the tar's end blocks")
        except FetchError:
            raise  # past the deadline: an OSError too, but final
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            problem: Exception = exc
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, IncompleteRead, garbled responses
            problem = exc
        attempt += 1
        if attempt > policy.retries:
            raise FetchError(f"{url}: gave up after {policy.retries} retries: {problem}") from problem
        time.sleep(max(0.0, min(policy.backoff * 2 ** (attempt - 1), left())))


def open_shard(url: str, policy: FetchPolicy | None = None) -> BinaryIO:
    """A readable binary stream of a shard: the local file, the cached download, or an in-memory copy."""
    policy = policy or FetchPolicy()
    url = str(url)
    if not is_remote(url):
        return open(urlparse(url).path if url.startswith("file://") else url, "rb")
    scheme = urlparse(url).scheme
    if scheme not in ("http", "https"):
        import fsspec  # s3://, gs://, ... through their fsspec backends

        with fsspec.open(url, "rb") as f:
            return io.BytesIO(f.read())
    if policy.cache_dir is None:
        buffer = io.BytesIO()
        _http_download(url, buffer, policy)
        buffer.seek(0)
        return buffer
    target = cache_path(url, policy.cache_dir)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            with open(partial, "w+b") as f:
                _http_download(url, f, policy)
            os.replace(partial, target)  # atomic: readers never see half a shard
        finally:
            partial.unlink(missing_ok=True)  # a failed download leaves nothing behind, so the next run fetches again
    return open(target, "rb")
