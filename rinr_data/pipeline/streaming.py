"""Fetch shards from local paths, http(s) or fsspec URLs, with an on-disk cache and retries with backoff."""

from __future__ import annotations

import hashlib
import io
import os
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
    """How remote shards are fetched: cache folder (None: keep in memory), attempts, first backoff, timeout."""

    cache_dir: str | None = None
    retries: int = 6
    backoff: float = 0.5
    timeout: float = 30.0


def is_remote(url: str) -> bool:
    """True for URLs with a scheme other than file://."""
    scheme = urlparse(str(url)).scheme
    return len(scheme) > 1 and scheme != "file"


def cache_path(url: str, cache_dir: str | Path) -> Path:
    """Where a remote shard is cached: a hash of the URL keeps names unique, the base name keeps them readable."""
    digest = hashlib.sha1(url.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{digest}-{os.path.basename(urlparse(url).path) or 'shard'}"


def _http_download(url: str, sink: BinaryIO, policy: FetchPolicy) -> None:
    """Download into `sink`, resuming with a Range request after a dropped connection."""
    expected: int | None = None
    attempt = 0
    while True:
        have = sink.tell()
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=policy.timeout) as response:
                if have and response.status != 206:  # server ignored the range: start over
                    sink.seek(0)
                    sink.truncate()
                    have = 0
                length = response.headers.get("Content-Length")
                if length is not None and expected is None:
                    expected = have + int(length)
                while chunk := response.read(1 << 20):
                    sink.write(chunk)
            if expected is None or sink.tell() >= expected:
                return
            raise ConnectionError(f"connection closed after {sink.tell()} of {expected} bytes")
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code != 429:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            problem: Exception = exc
        except (OSError, ConnectionError) as exc:
            problem = exc
        attempt += 1
        if attempt > policy.retries:
            raise FetchError(f"{url}: gave up after {policy.retries} retries: {problem}") from problem
        time.sleep(policy.backoff * 2 ** (attempt - 1))


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
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        with open(partial, "wb") as f:
            _http_download(url, f, policy)
        os.replace(partial, target)  # atomic: readers never see half a shard
    return open(target, "rb")
