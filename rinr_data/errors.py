"""Exceptions raised by rinr_data."""

from __future__ import annotations


class FormatError(ValueError):
    """A record, shard or manifest is malformed, truncated, corrupt or of an unsupported version."""
