"""Lightning modules trained on rinr-data batches."""

from .data import JPEGDataModule, RINRDataModule
from .detector import EdgeDetector
from .networks import ARCHS, CenterNetConfig, Detections

__all__ = ["ARCHS", "CenterNetConfig", "Detections", "EdgeDetector", "JPEGDataModule", "RINRDataModule"]
