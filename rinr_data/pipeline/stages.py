"""Pipeline stages in the webdataset manner: plain generators that take an iterator of items as first argument.

shards -> read_shards -> shuffle_within_shards -> parse_samples -> batched. Each stage that can meet a damaged item
takes an error handler (`handler`): the policies live here, and the stage that knows the shard and the sample names
them in the error before handing it on. Tests call the stages on plain lists.
"""

from __future__ import annotations

import random
import warnings
from typing import Any, Callable, Iterable, Iterator

from ..errors import FormatError
from .samples import ParsedSample
from .shardlist import ShardRef

# Called with each FormatError a stage meets: raises to stop the run, returns to drop the item and go on.
Handler = Callable[[FormatError], None]
ON_ERROR = ("raise", "warn", "skip")


def reraise(error: FormatError) -> None:
    """Policy "raise": stop at the first damaged shard or sample."""
    raise error


class ErrorPolicy:
    """The handler of an `on_error` policy name, counting what it drops; a `fatal` error raises under any policy."""

    def __init__(self, on_error: str) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.dropped = 0

    def __call__(self, error: FormatError) -> None:
        # A `fatal` error is a configuration mistake (e.g. the wrong codec), not a damaged sample: never drop it.
        if self.on_error == "raise" or getattr(error, "fatal", False):
            raise error
        self.dropped += 1
        if self.on_error == "warn":
            warnings.warn(str(error), stacklevel=3)


def read_shards(
    refs: Iterable[ShardRef],
    read: Callable[[ShardRef], tuple[list[dict[str, Any]], FormatError | None]],
    handler: Handler = reraise,
) -> Iterator[tuple[ShardRef, list[dict[str, Any]]]]:
    """(shard, its raw samples) per shard; a shard `read` could not finish goes to `handler`, which keeps (unless it
    raises) the whole samples read before the damage."""
    for ref in refs:
        raw, error = read(ref)
        if error is not None:
            if _raises(handler):
                raise error
            kept = f"{len(raw)} whole sample(s) before the damage kept, the rest skipped" if raw else "shard skipped"
            handler(FormatError(f"{error} ({kept})"))
        if raw:
            yield ref, raw


def _raises(handler: Handler) -> bool:
    return handler is reraise or getattr(handler, "on_error", None) == "raise"


def shuffle_within_shards(
    shards: Iterable[tuple[ShardRef, list[dict[str, Any]]]], seed: int, epoch: int, shuffle: bool = True
) -> Iterator[tuple[ShardRef, dict[str, Any]]]:
    """(shard, raw sample) in a seeded permutation inside each shard (in order when `shuffle` is off)."""
    for ref, raw in shards:
        if shuffle:
            # Keyed by the shard's file name, not its URL: a mirror or cache gives the same order.
            random.Random(f"{seed}/{epoch}/{ref.url.rsplit('/', 1)[-1]}").shuffle(raw)
        for sample in raw:
            yield ref, sample


def parse_samples(
    samples: Iterable[tuple[ShardRef, dict[str, Any]]],
    parse: Callable[[dict[str, Any]], ParsedSample],
    handler: Handler = reraise,
) -> Iterator[ParsedSample]:
    """Parsed samples; a damaged one goes to `handler` with its shard and key named."""
    for ref, sample in samples:
        try:
            yield parse(sample)
        except FormatError as exc:
            error = FormatError(f"{ref.url}: sample {sample.get('__key__')!r}: {exc}")
            error.fatal = getattr(exc, "fatal", False)  # type: ignore[attr-defined]
            if _raises(handler) or error.fatal:  # type: ignore[attr-defined]
                raise error from None
            handler(error)


def batched(
    samples: Iterable[ParsedSample], size: int, partial: bool = True, limit: int | None = None
) -> Iterator[list[ParsedSample]]:
    """Lists of `size` samples, at most `limit` of them; the last shorter list too when `partial`."""
    pending: list[ParsedSample] = []
    count = 0
    for sample in samples:
        pending.append(sample)
        if len(pending) < size:
            continue
        if limit is not None and count >= limit:
            return
        yield pending
        pending, count = [], count + 1
    if pending and partial and limit is None:
        yield pending
