"""Streaming shards over HTTP from a real server on 127.0.0.1: cache, resume after dropped connections, errors."""

from __future__ import annotations

import collections
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from shard_fixtures import write_dataset

from rinr_data.pipeline.dataset import RINRDataset
from rinr_data.pipeline.loader import RINRLoader
from rinr_data.pipeline.streaming import FetchError, FetchPolicy, open_shard


class _Server:
    """Serves a folder; optionally drops the first connection for each .tar half way; honours Range requests."""

    def __init__(self, root: Path, flaky: bool) -> None:
        self.root, self.flaky = root, flaky
        self.requests: collections.Counter[str] = collections.Counter()
        self.dropped: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests[name] += 1
                path = server.root / name
                if not path.is_file():
                    self.send_error(404, "not here")
                    return
                data = path.read_bytes()
                start = 0
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.flaky and name.endswith(".tar") and name not in server.dropped:
                    server.dropped.add(name)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)  # mid-shard drop: the client sees a short read
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("served")
    keys = write_dataset(out, count=7, shard_size=3)
    return out, keys


def _keys(loader) -> list[str]:
    return [k for batch in loader for k in batch["keys"]]


def test_stream_with_cache_downloads_each_shard_once(shard_dir, tmp_path):
    out, keys = shard_dir
    with _Server(out, flaky=True) as server:
        ds = RINRDataset(f"{server.url}/manifest.json", batch_size=2, device="cpu", cache_dir=str(tmp_path), retries=3)
        loader = RINRLoader(ds)
        first, second = _keys(loader), _keys(loader)
        local = _keys(RINRLoader(RINRDataset(out, batch_size=2, device="cpu")))
    assert sorted(first) == sorted(keys) == sorted(second)
    assert first == local  # same shuffle as the local copy: shard order is keyed by position, not URL
    tars = {n: c for n, c in server.requests.items() if n.endswith(".tar")}
    assert len(tars) == 3
    assert all(c == 2 for c in tars.values())  # one dropped connection + one resumed request, then the cache
    assert len(list(tmp_path.rglob("*.tar"))) == 3 and not list(tmp_path.rglob("*.part"))


def test_stream_without_cache_survives_drops(shard_dir):
    out, keys = shard_dir
    with _Server(out, flaky=True) as server:
        urls = [f"{server.url}/shard-{i:06d}.tar" for i in range(3)]
        got = _keys(RINRLoader(RINRDataset(urls, batch_size=3, shuffle=False, device="cpu", retries=2)))
    assert got == keys


def test_missing_shard_fails_fast_naming_the_url(shard_dir):
    out, _ = shard_dir
    with _Server(out, flaky=False) as server:
        with pytest.raises(FetchError, match=r"nope\.tar: HTTP 404"):
            open_shard(f"{server.url}/nope.tar", FetchPolicy(retries=5, backoff=10))
