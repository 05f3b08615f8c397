"""Which shards a reader sees: resolve a manifest or URL list, shuffle per epoch, split by node and worker."""

from __future__ import annotations

import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

from ..errors import FormatError
from ..shards import MANIFEST, count_samples, read_manifest
from .streaming import FetchPolicy, cache_path, is_remote, open_shard


@dataclass(frozen=True)
class ShardRef:
    """A shard URL and its sample count (from the manifest, or counted for a local shard; None for remote ones)."""

    url: str
    samples: int | None = None


def _expand(pattern: str) -> list[str]:
    from webdataset.shardlists import expand_urls

    return list(expand_urls(pattern))


def _remote_manifest(url: str, policy: FetchPolicy) -> dict:
    folder = Path(policy.cache_dir) if policy.cache_dir else Path(tempfile.mkdtemp(prefix="rinr-manifest-"))
    local = cache_path(url, folder).with_suffix("")  # one folder per manifest URL, holding manifest.json
    local.mkdir(parents=True, exist_ok=True)
    with open_shard(url, FetchPolicy(None, policy.retries, policy.backoff, policy.timeout)) as f:
        (local / MANIFEST).write_bytes(f.read())
    return read_manifest(local)


def resolve_shards(
    source: str | os.PathLike | Sequence[str],
    policy: FetchPolicy | None = None,
) -> tuple[list[ShardRef], dict | None]:
    """Shard list and manifest of: a dataset folder or its manifest.json (local or http), brace patterns or a list."""
    policy = policy or FetchPolicy()
    if isinstance(source, (list, tuple)):
        return [_counted(_exists(u), policy) for item in source for u in _expand(str(item))], None
    text = str(source)
    if text.endswith(MANIFEST) or (not is_remote(text) and Path(text).is_dir()):
        base = text[: -len(MANIFEST)].rstrip("/") if text.endswith(MANIFEST) else text.rstrip("/")
        manifest = _remote_manifest(text, policy) if is_remote(text) else read_manifest(base)
        refs = [ShardRef(f"{base}/{s['name']}", int(s["samples"])) for s in manifest["shards"]]
        return refs, manifest
    refs = [_counted(_exists(u), policy) for u in _expand(text)]
    if not refs:
        raise FormatError(f"no shards match {text!r}")
    return refs, None


def _exists(url: str) -> str:
    # Nothing at a path the caller named is a misconfiguration, not a damaged shard: refused here, whatever on_error
    # says, instead of yielding an empty epoch; remote URLs are only known when fetched.
    local = urlparse(url).path if url.startswith("file://") else url
    if not is_remote(url) and not Path(local).exists():
        raise FormatError(f"{url}: no such shard file or dataset folder")
    return url


def _counted(url: str, policy: FetchPolicy) -> ShardRef:
    # Without a manifest, a local shard's count costs one pass over its tar headers and gives the loader a length
    # (exact mid-epoch resume in Lightning, equal batches under DDP); remote shards would have to be downloaded.
    # A shard that cannot be read stays uncounted: reading it later reports it under the dataset's on_error.
    if is_remote(url):
        return ShardRef(url)
    try:
        with open_shard(url, policy) as stream:
            return ShardRef(url, count_samples(stream, url))
    except (OSError, FormatError):
        return ShardRef(url)


def epoch_order(shards: Sequence[ShardRef], seed: int, epoch: int, shuffle: bool) -> list[ShardRef]:
    """The epoch's shard order: the same on every node and worker, different per epoch when shuffling."""
    order = list(shards)
    if shuffle:
        random.Random(f"{seed}/{epoch}").shuffle(order)
    return order


def split(items: Sequence[ShardRef], index: int, count: int) -> list[ShardRef]:
    """Every `count`-th item starting at `index`: a node's or a worker's share."""
    return list(items[index::count])


def equal_quotas(shares: Sequence[Sequence[ShardRef]], workers: int, batch_size: int) -> list[list[int]]:
    """Full batches each (rank, worker) may yield so that every rank yields the same number per epoch; `shares`:
    each rank's shards for the epoch.

    Needs per-shard sample counts (a manifest); the rank with the fewest full batches sets the count and other
    ranks drop their surplus from their last workers, so DDP never waits on a rank that ran out.
    """
    if any(s.samples is None for share in shares for s in share):
        raise ValueError(
            "equal batches per rank need per-shard sample counts: pass a manifest (remote shards "
            "without one are not counted)"
        )
    full = [
        [
            sum(s.samples for s in split(share, w, workers)) // batch_size  # type: ignore[misc]
            for w in range(workers)
        ]
        for share in shares
    ]
    target = min(sum(rank) for rank in full)
    quotas = []
    for rank in full:
        rank = list(rank)
        excess = sum(rank) - target
        for w in reversed(range(workers)):
            cut = min(excess, rank[w])
            rank[w] -= cut
            excess -= cut
        quotas.append(rank)
    return quotas
