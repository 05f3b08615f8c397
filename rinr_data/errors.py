"""Every exception rinr_data raises, in one place."""

from __future__ import annotations


class FormatError(ValueError):
    """A record, shard or manifest is malformed, truncated, corrupt or of an unsupported version."""


class SourceError(ValueError):
    """A dataset cannot be read at all; the message names the file (and line where known)."""


class SampleError(ValueError):
    """One sample cannot be converted; the message names its file (and line or annotation id)."""


class FetchError(OSError):
    """A shard could not be fetched after every retry."""


class ResumeError(RuntimeError):
    """An output folder cannot be resumed with these arguments (or is not a resumable output)."""


class WrongCodecError(FormatError):
    """Shards of another codec than the reader expects: a configuration mistake, raised whatever on_error says."""

    fatal = True
