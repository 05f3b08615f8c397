"""Lightning modules trained on rinr-data batches."""

from .data import JPEGDataModule, RINRDataModule
from .detector import ARCHS, CenterNetConfig, Detections, EdgeDetector

__all__ = ["ARCHS", "CenterNetConfig", "Detections", "EdgeDetector", "JPEGDataModule", "RINRDataModule"]
