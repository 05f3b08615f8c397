"""rinr-data: datasets shipped as residual implicit neural representations, decoded in batches on the GPU."""

from .augment import AugmentConfig
from .config import PRESETS, CodecConfig, SceneConfig
from .dataset import RINRDataset
from .decoder import decode, decode_batch, decode_records
from .encoder import EncodedFrame, encode, encode_batch, encode_frames
from .grid_encoder import encode_sequence, encode_sequence_frames
from .errors import FormatError
from .loader import RINRLoader
from .record import FORMAT_VERSION, Record
from .record import pack as pack_record
from .record import unpack as unpack_record

__all__ = [
    "CodecConfig", "SceneConfig", "PRESETS", "FormatError", "FORMAT_VERSION", "Record", "EncodedFrame",
    "encode", "encode_batch", "encode_frames", "encode_sequence", "encode_sequence_frames",
    "decode", "decode_batch", "decode_records",
    "pack_record", "unpack_record", "RINRDataset", "RINRLoader", "AugmentConfig",
]
__version__ = "0.3.2"
