"""Shared by the benchmark tools: rewrite one marked section of docs/BENCHMARKS.md, leaving the rest alone."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, begin: str, end: str, text: str, heading: str | None = None) -> None:
    """Put `text` between the `begin`/`end` markers of `path`, appending the block (under `heading`) if absent."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip("\n") + "\n\n" + (f"{heading}\n\n" if heading else "") + block + "\n"
    path.write_text(doc)
