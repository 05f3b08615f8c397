"""Faulty links (issue 22): a real HTTP server on 127.0.0.1 that fails on purpose - 500s, stalls, drips, drops
mid-shard, ignores or botches Range requests, cuts bodies without a length - against the shard fetcher.

The fetcher retries with backoff, resumes by byte range, gives up with a FetchError naming the URL after its
retries or past its deadline, and never leaves a partial shard under the cache's final name. Every server loop is
bounded (a stalled handler waits at most STALL_MAX seconds, released early when its test ends); client timeouts
are 1 s (0.2 s where only a deadline is asserted) and deadlines 0.5-0.8 s.
"""

from __future__ import annotations

import collections
import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from shard_fixtures import write_dataset

from rinr_data.errors import FormatError
from rinr_data.pipeline.dataset import RINRDataset
from rinr_data.pipeline.streaming import FetchError, FetchPolicy, cache_path, open_shard

STALL_MAX = 3.0  # the longest any handler stalls: past every client timeout and deadline below
DRIP_EVERY = 0.05  # a dripping handler sends one byte this often: never idle long enough to trip a read timeout
FAST = dict(backoff=0.02, timeout=1.0)  # a stall trips the timeout; a busy machine never should


class FaultyServer:
    """Serves `files` on 127.0.0.1; request i of a file runs faults[name][i] (then "ok" once the list is used up).

    Faults: "500"; "stall" (headers, then nothing) and "stall-half" (half the body first); "drip" (a byte every
    DRIP_EVERY); "drop-half" (half of what was asked, then the connection is shut); "ignore-range" (200 and the whole
    file whatever the Range); "wrong-range" (206 from byte 0 whatever was asked); "nolength-half" (200 without a
    Content-Length whatever the Range, half the file, close); "chunked-half" (chunked encoding cut inside a chunk).
    """

    def __init__(self, files: dict[str, bytes], faults: dict[str, list[str]] | None = None) -> None:
        self.files = files
        self.faults = {k: list(v) for k, v in (faults or {}).items()}
        self.log: list[tuple[str, int | None, float]] = []  # (name, range start, arrival time) per request
        self.injected: collections.Counter[str] = collections.Counter()
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                start = None
                if "Range" in self.headers:
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                server.log.append((name, start, time.monotonic()))
                if name not in server.files:
                    self.send_error(404, "not here")
                    return
                pending = server.faults.get(name) or []
                fault = pending.pop(0) if pending else "ok"
                if fault != "ok":
                    server.injected[fault] += 1
                self.close_connection = True
                server.respond(self, fault, server.files[name], start)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def respond(self, h: BaseHTTPRequestHandler, fault: str, data: bytes, start: int | None) -> None:
        """Answer one request as `fault` says."""
        if fault == "500":
            h.send_error(500, "injected")
            return
        if fault == "wrong-range" and start is not None:
            start = 0
        elif fault in ("ignore-range", "nolength-half"):
            start = None
        body = data[start or 0 :]
        if fault == "chunked-half":
            h.send_response(200)
            h.send_header("Transfer-Encoding", "chunked")
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(b"%x\r\n" % len(body) + body[: len(body) // 2])
            h.wfile.flush()
            h.connection.shutdown(2)
            return
        if start is not None:
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        if fault != "nolength-half":
            h.send_header("Content-Length", str(len(body)))
        h.send_header("Connection", "close")
        h.end_headers()
        if fault in ("stall", "stall-half"):
            h.wfile.write(body[: len(body) // 2] if fault == "stall-half" else b"")
            h.wfile.flush()
            self.release.wait(STALL_MAX)
            return
        if fault == "drip":
            until = time.monotonic() + STALL_MAX
            for i in range(len(body)):
                if self.release.wait(DRIP_EVERY) or time.monotonic() > until:
                    return
                h.wfile.write(body[i : i + 1])
                h.wfile.flush()
            return
        if fault in ("drop-half", "nolength-half"):
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.connection.shutdown(2)  # mid-shard: the client sees a short read
            return
        h.wfile.write(body)

    def url(self, name: str) -> str:
        """The URL of one served file."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def requests(self, name: str) -> list[int | None]:
        """The range start of every request for `name` (None: the whole file), in order."""
        return [start for n, start, _ in self.log if n == name]

    def __enter__(self) -> "FaultyServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()  # stalled handlers return at once
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, list[str]]:
    """Three JPEG shards of 3, 3 and 1 samples (no fitting: the links are the subject here)."""
    out = tmp_path_factory.mktemp("served")
    return out, write_dataset(out, count=7, shard_size=3, codec="jpeg")


@pytest.fixture(scope="module")
def shard(dataset) -> bytes:
    return (dataset[0] / "shard-000000.tar").read_bytes()


def fetch(url: str, **policy) -> bytes:
    """The bytes open_shard gives for `url` under FetchPolicy(**policy)."""
    with open_shard(url, FetchPolicy(**policy)) as f:
        return f.read()


# ---------------------------------------------------------------------------------------------- retries and backoff


def test_server_errors_are_retried_with_growing_backoff(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["500"] * 3}) as server:
        assert fetch(server.url("s.tar"), retries=3, backoff=0.05, timeout=1.0) == shard
    arrivals = [t for _, _, t in server.log]
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(arrivals) == 4 and server.injected["500"] == 3
    assert all(gap >= 0.05 * 2**i for i, gap in enumerate(gaps))  # 0.05, 0.1, 0.2 s at least: the backoff doubles


def test_after_the_retries_a_fetch_error_names_the_url(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["500"] * 10}) as server:
        with pytest.raises(
            FetchError, match=re.escape(server.url("s.tar")) + r": gave up after 2 retries: HTTP Error 500"
        ):
            fetch(server.url("s.tar"), retries=2, **FAST)
    assert len(server.log) == 3


def test_client_errors_are_not_retried(shard):
    with FaultyServer({"s.tar": shard}) as server:
        with pytest.raises(FetchError, match=r"nope\.tar: HTTP 404"):
            fetch(server.url("nope.tar"), retries=5, **FAST)
    assert len(server.log) == 1


# ---------------------------------------------------------------------------------------------- stalls and drips


@pytest.mark.parametrize("fault,resumed_at", [("stall", None), ("stall-half", "half")])
def test_a_stalled_response_times_out_and_the_retry_resumes(shard, fault, resumed_at):
    with FaultyServer({"s.tar": shard}, {"s.tar": [fault]}) as server:
        assert fetch(server.url("s.tar"), retries=2, **FAST) == shard
    assert server.requests("s.tar") == [None, None if resumed_at is None else len(shard) // 2]


def test_a_server_that_stalls_every_time_cannot_hold_a_fetch_past_its_deadline(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["stall"] * 100}) as server:
        began = time.monotonic()
        with pytest.raises(
            FetchError, match=re.escape(server.url("s.tar")) + r": not complete within the 0.8 s deadline"
        ):
            fetch(server.url("s.tar"), retries=100, backoff=0.02, timeout=0.2, deadline=0.8)
        # Liveness, not speed: without the deadline 100 retries of 0.2 s stalls would take 20 s and more.
        assert time.monotonic() - began < STALL_MAX
    assert 2 <= len(server.log) < 100


def test_a_dripping_server_never_trips_the_read_timeout_but_the_deadline_ends_it(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["drip"]}) as server:
        began = time.monotonic()
        with pytest.raises(FetchError, match=r"not complete within the 0.5 s deadline \(\d+ bytes after 1 attempt"):
            fetch(server.url("s.tar"), retries=3, backoff=0.02, timeout=1.0, deadline=0.5)
        assert time.monotonic() - began < STALL_MAX  # a drip of the whole shard would take minutes
    assert len(server.log) == 1  # the deadline is final: no retry after it


# ---------------------------------------------------------------------------------------------- drops and ranges


def test_drops_mid_shard_resume_by_byte_range(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["drop-half"] * 3}) as server:
        assert fetch(server.url("s.tar"), retries=3, **FAST) == shard
    starts = server.requests("s.tar")
    n = len(shard)
    # Each request asks for what is missing: half the shard, then half of the rest, and so on.
    assert starts == [None, n // 2, n // 2 + (n - n // 2) // 2, starts[2] + (n - starts[2]) // 2]


def test_a_server_ignoring_the_range_is_read_from_the_start(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["drop-half", "ignore-range"]}) as server:
        assert fetch(server.url("s.tar"), retries=2, **FAST) == shard
    assert server.requests("s.tar") == [None, len(shard) // 2]


def test_a_range_answered_from_the_wrong_offset_is_never_spliced_in(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["drop-half", "wrong-range"]}) as server:
        assert fetch(server.url("s.tar"), retries=3, **FAST) == shard
    assert server.requests("s.tar") == [None, len(shard) // 2, None]  # refused, then fetched whole


def test_a_cut_chunked_body_is_retried(shard):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["chunked-half"]}) as server:
        assert fetch(server.url("s.tar"), retries=2, **FAST) == shard
    assert len(server.log) == 2


def test_a_tar_cut_without_a_content_length_is_not_taken_as_complete(shard, tmp_path):
    with FaultyServer({"s.tar": shard}, {"s.tar": ["nolength-half"]}) as server:
        assert fetch(server.url("s.tar"), cache_dir=str(tmp_path), retries=2, **FAST) == shard
    assert len(server.log) == 2


# ---------------------------------------------------------------------------------------------- the cache


def cache_files(folder: Path) -> list[str]:
    """Every file in the cache folder."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("fault", ["500", "drop-half", "stall-half", "nolength-half"])
def test_a_failed_download_leaves_nothing_in_the_cache_and_the_next_run_fetches_again(shard, tmp_path, fault):
    cache = tmp_path / "cache"
    with FaultyServer({"s.tar": shard}, {"s.tar": [fault] * 3}) as server:
        url = server.url("s.tar")
        with pytest.raises(FetchError, match=re.escape(url)):
            fetch(url, cache_dir=str(cache), retries=2, **FAST)
        assert cache_files(cache) == []  # neither the final name nor a .part file
        assert fetch(url, cache_dir=str(cache), retries=2, **FAST) == shard  # the server has healed
        assert fetch(url, cache_dir=str(cache), retries=2, **FAST) == shard  # now from the cache
    assert len(server.log) == 4
    assert cache_files(cache) == [cache_path(url, cache).name]
    assert hashlib.sha256((cache / cache_files(cache)[0]).read_bytes()).digest() == hashlib.sha256(shard).digest()


def test_the_deadline_is_backward_compatible_and_can_be_turned_off():
    assert FetchPolicy().deadline == 3600.0
    assert FetchPolicy(None, 6, 0.5, 30.0) == FetchPolicy()  # the positional form shardlist uses
    assert FetchPolicy(deadline=None).deadline is None


# ---------------------------------------------------------------------------------------------- the dataset


def _keys(ds: RINRDataset) -> list[str]:
    return [k for batch in ds for k in batch.keys]


def test_the_dataset_loses_only_the_shard_whose_link_stays_down(dataset):
    out, keys = dataset
    files = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    faults = {"shard-000000.tar": ["drop-half"], "shard-000001.tar": ["500"] * 10, "shard-000002.tar": ["500"]}
    with FaultyServer(files, faults) as server:
        urls = [server.url(n) for n in sorted(files)]
        ds = RINRDataset(urls, batch_size=2, shuffle=False, device="cpu", on_error="skip", retries=1)
        assert _keys(ds) == keys[:3] + keys[6:] and ds.errors == 1
        down = re.escape(urls[1])
        with pytest.raises(FormatError, match=rf"{down}: cannot read shard: {down}: gave up after 1 retries"):
            _keys(RINRDataset(urls, batch_size=2, shuffle=False, device="cpu", retries=1))
    # The dropped shard resumed once, the shard that stayed down was asked 1 + 1 retry times per run.
    assert server.requests("shard-000000.tar")[:2] == [None, len(files["shard-000000.tar"]) // 2]
    assert server.injected["500"] >= 3
