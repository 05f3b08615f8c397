"""Fuzzing (issue 22): every input a fuzzer ever found replays cleanly, the seeds reach the parsers' deep paths, and a
short coverage-guided run of each target (atheris in a subprocess: libFuzzer ends its process) finds nothing.

The targets are rinr_bench.fuzz's (records, shards, annotation files); `python tools/fuzz.py TARGET --seconds N` runs
them for longer. A new finding goes into tests/data/fuzz/<target>/ and, until the library is fixed, into KNOWN.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import rinr_data as R
from rinr_bench import fuzz
from rinr_data import shards
from rinr_data.errors import FormatError
from rinr_data.format import container
from rinr_data.pipeline.samples import parse_sample, with_scenes
from rinr_data.sources import open_source  # noqa: F401 - imported here, not inside a replay's CPU-time limit

# Findings not fixed yet: input -> (why it fails, the exception it raises, a regex its traceback matches). The replay
# is xfail(strict) - it starts passing, and so failing, the day the fix lands: then delete the entry.
KNOWN: dict[str, tuple[str, type[BaseException], str]] = {}
REPLAY_CPU_SECONDS = 5
# Inputs of the short run of all targets in one process: ~10 s of fuzzing on a 2-core machine after ~10 s of start-up.
SHORT_RUNS = 10000


@pytest.fixture(autouse=True)
def annotation_folders(tmp_path_factory, monkeypatch):
    """The annotation target's dataset folders under pytest's temporary root, made afresh for each test."""
    monkeypatch.setenv(fuzz.WORKDIR_ENV, str(tmp_path_factory.mktemp("fuzz-work")))
    monkeypatch.setattr(fuzz, "_folders", {})


def regression_inputs() -> list:
    """One pytest param per saved input, xfail(strict) while it is a known, unfixed finding."""
    params = []
    for target in fuzz.EACH:
        for path in sorted((fuzz.REGRESSIONS / target).glob("*")):
            name = f"{target}/{path.name}"
            marks = []
            if name in KNOWN:
                reason, raises, _ = KNOWN[name]
                marks = [pytest.mark.xfail(strict=True, raises=raises, reason=reason)]
            params.append(pytest.param(target, path, id=name, marks=marks))
    return params


def test_the_regression_corpus_is_small_inputs_of_known_targets():
    saved = [p for p in fuzz.REGRESSIONS.glob("*/*") if p.is_file()]
    assert saved and {p.parent.name for p in saved} <= set(fuzz.EACH)
    assert all(len(p.read_bytes()) <= 4096 for p in saved)  # minimised: a few 512-byte tar blocks at most
    assert set(KNOWN) <= {f"{p.parent.name}/{p.name}" for p in saved}


@pytest.mark.parametrize("target,path", regression_inputs())
def test_saved_inputs_raise_only_the_documented_errors(target, path):
    # A hang guard, not a speed test: each input takes milliseconds once handled, a hang spins for ever.
    fuzz.run_input(target, path.read_bytes(), seconds=REPLAY_CPU_SECONDS)


def test_record_seeds_decode():
    seeds = fuzz.record_seeds()
    t = fuzz.target("record")
    standalone = [s for s in seeds if s[0] & 2 or getattr(R.unpack_record(s[1:]), "scene", None) is None]
    assert len(standalone) == len(seeds) - 2  # all but the scene-mode frame (with either coder) without its scene
    for seed in standalone:
        t.run(seed)  # no error at all: the seeds start the search inside the decoder, not at its first check
    codecs = {R.unpack_record(s[1:]).codec for s in seeds if not s[0] & 2}
    assert codecs == {"latent-grid", "residual-siren"}
    assert container.MAX_IMAGE_PIXELS == 4096 * 4096  # the target's cap on frames ends with each input


def test_shard_seeds_parse_every_sample_with_a_safe_key():
    parsed, refused = [], []
    for seed in fuzz.shard_seeds():
        for sample in with_scenes(list(shards.tar_samples(io.BytesIO(seed[1:]), "seed.tar")), "seed.tar"):
            try:
                parsed.append(parse_sample(sample, classes=fuzz.CLASSES).codec)
            except FormatError:
                refused.append(sample["__key__"])
    assert sorted(set(parsed)) == ["grid", "jpeg", "paper", "webp"] and len(parsed) == 12
    assert refused == ["../x", "/abs"]


def test_annotation_seeds_load_one_of_each_kind(tmp_path, monkeypatch):
    monkeypatch.setenv(fuzz.WORKDIR_ENV, str(tmp_path))
    seeds = fuzz.annotation_seeds()
    t = fuzz.target("annotations")
    for seed in seeds[: len(fuzz.ANNOTATION_FILES)]:
        t.run(seed)
    assert [s[0] for s in seeds[: len(fuzz.ANNOTATION_FILES)]] == list(range(len(fuzz.ANNOTATION_FILES)))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(fuzz.ANNOTATION_FILES)


def test_the_checksum_repairs_let_mutations_reach_the_structure():
    blob = fuzz.record_blobs()[0]
    mutated = bytearray(blob)
    mutated[21] = 200  # hidden layer count far above the grid's limit
    with pytest.raises(FormatError, match="checksum"):
        R.unpack_record(bytes(mutated))
    with pytest.raises(FormatError, match="hidden layers out of bounds"):
        R.unpack_record(fuzz.with_crc(bytes(mutated)))
    tar = bytearray(fuzz.shard_seeds()[0][1:])
    tar[0] = ord("z")  # the first member's name: "a.json" -> "z.json"
    with pytest.raises(tarfile.ReadError):
        list(tarfile.open(fileobj=io.BytesIO(bytes(tar))))
    repaired = tarfile.open(fileobj=io.BytesIO(fuzz.repair_tar_checksums(bytes(tar))))
    assert repaired.getnames()[0].startswith("z.")


def test_a_short_fuzz_run_of_every_target_finds_nothing_new(tmp_path):
    pytest.importorskip("atheris", reason="atheris (dev extras) has wheels for Linux only")
    known = [k for _, _, k in KNOWN.values()]
    cmd = [sys.executable, "-m", "rinr_bench.fuzz", "any", "--runs", str(SHORT_RUNS), "--seed", "1", "--quiet"]
    cmd += ["--corpus", str(tmp_path / "corpus"), "--findings", str(tmp_path / "findings")]
    cmd += [arg for k in known for arg in ("--known", k)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(fuzz.ROOT), timeout=300)
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-3000:]
    assert done.returncode == 0, summary
    found = re.match(r"any: (\d+) inputs in .*corpus (\d+) inputs; exit 0; findings: none$", summary)
    assert found, summary
    assert int(found.group(1)) >= SHORT_RUNS
    # Coverage-guided: the run kept inputs that reached new code beyond the seeds it started from.
    assert int(found.group(2)) > len(fuzz.any_seeds())
    assert not [p for p in (tmp_path / "findings").rglob("*") if p.is_file()]
