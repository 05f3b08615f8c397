"""Pipeline stages on plain lists: no tar files, no workers."""

from __future__ import annotations

import warnings

import pytest
import torch

from rinr_data.errors import FormatError
from rinr_data.pipeline import stages
from rinr_data.pipeline.samples import ParsedSample
from rinr_data.pipeline.shardlist import ShardRef


def ref(name: str) -> ShardRef:
    return ShardRef(f"/data/{name}", None)


def sample(key: str) -> ParsedSample:
    return ParsedSample(
        key,
        "jpeg",
        torch.zeros(3, 2, 2, dtype=torch.uint8),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.int64),
        (2, 2),
    )


def test_batched_keeps_or_drops_the_partial_batch_and_stops_at_the_limit():
    items = [sample(str(i)) for i in range(7)]
    assert [len(b) for b in stages.batched(items, 3)] == [3, 3, 1]
    assert [len(b) for b in stages.batched(items, 3, partial=False)] == [3, 3]
    assert [[s.key for s in b] for b in stages.batched(items, 3, limit=1)] == [["0", "1", "2"]]


def test_shuffle_within_shards_is_seeded_per_shard_name_and_keeps_shards_apart():
    shards = [(ref("a.tar"), [{"__key__": str(i)} for i in range(20)]), (ref("b.tar"), [{"__key__": "x"}])]
    once = [(r.url, s["__key__"]) for r, s in stages.shuffle_within_shards([(r, list(x)) for r, x in shards], 1, 0)]
    again = [(r.url, s["__key__"]) for r, s in stages.shuffle_within_shards([(r, list(x)) for r, x in shards], 1, 0)]
    other = [(r.url, s["__key__"]) for r, s in stages.shuffle_within_shards([(r, list(x)) for r, x in shards], 1, 1)]
    assert once == again and once != other
    assert [k for u, k in once[:20]] != [str(i) for i in range(20)] and once[20] == ("/data/b.tar", "x")
    in_order = stages.shuffle_within_shards([(r, list(x)) for r, x in shards], 1, 0, shuffle=False)
    assert [s["__key__"] for _, s in in_order][:3] == ["0", "1", "2"]


def _parse(raw: dict) -> ParsedSample:
    if raw["__key__"] == "bad":
        raise FormatError("record checksum mismatch")
    return sample(raw["__key__"])


def test_parse_samples_names_shard_and_sample_and_follows_the_policy():
    raws = [(ref("s.tar"), {"__key__": "a"}), (ref("s.tar"), {"__key__": "bad"}), (ref("s.tar"), {"__key__": "b"})]
    with pytest.raises(FormatError, match=r"^/data/s.tar: sample 'bad': record checksum mismatch$"):
        list(stages.parse_samples(raws, _parse, stages.ErrorPolicy("raise")))
    skip = stages.ErrorPolicy("skip")
    assert [s.key for s in stages.parse_samples(raws, _parse, skip)] == ["a", "b"] and skip.dropped == 1
    warn = stages.ErrorPolicy("warn")
    with pytest.warns(UserWarning, match="sample 'bad'"):
        assert [s.key for s in stages.parse_samples(raws, _parse, warn)] == ["a", "b"]


def test_a_fatal_error_raises_under_every_policy():
    def wrong_codec(raw: dict) -> ParsedSample:
        error = FormatError("holds 'jpeg' images")
        error.fatal = True  # type: ignore[attr-defined]
        raise error

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FormatError, match="holds 'jpeg' images"):
            list(stages.parse_samples([(ref("s.tar"), {"__key__": "a"})], wrong_codec, stages.ErrorPolicy("skip")))


def test_read_shards_keeps_what_was_read_before_the_damage_under_skip_and_raises_under_raise():
    def read(r: ShardRef) -> tuple[list[dict], FormatError | None]:
        if r.url.endswith("broken.tar"):
            return [], FormatError(f"{r.url}: cannot read shard: not a tar file")
        if r.url.endswith("cut.tar"):
            return [{"__key__": "before"}], FormatError(f"{r.url}: cannot read shard: unexpected end of data")
        return [{"__key__": "k"}], None

    refs = [ref("broken.tar"), ref("cut.tar"), ref("ok.tar")]
    skip = stages.ErrorPolicy("skip")
    got = [(r.url, [s["__key__"] for s in raw]) for r, raw in stages.read_shards(refs, read, skip)]
    assert got == [("/data/cut.tar", ["before"]), ("/data/ok.tar", ["k"])] and skip.dropped == 2
    warn = stages.ErrorPolicy("warn")
    with pytest.warns(UserWarning) as caught:
        list(stages.read_shards(refs, read, warn))
    assert [str(w.message) for w in caught] == [
        "/data/broken.tar: cannot read shard: not a tar file (shard skipped)",
        "/data/cut.tar: cannot read shard: unexpected end of data (1 whole sample(s) before the damage kept, the rest "
        "skipped)",
    ]
    with pytest.raises(FormatError, match="broken.tar: cannot read shard"):
        list(stages.read_shards(refs, read, stages.ErrorPolicy("raise")))
    with pytest.raises(ValueError, match="on_error must be one of"):
        stages.ErrorPolicy("ignore")
