"""The record format (docs/FORMAT.md): the container every codec writes into, quantisation and entropy coding.

Nothing here knows a codec: codecs build their payloads from these parts and register a wire id.
"""

from .container import FORMAT_VERSION, MAGIC, Header, Reader, read_header

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "Reader", "read_header"]
