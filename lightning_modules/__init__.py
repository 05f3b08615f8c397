"""Lightning modules trained on rinr-data batches."""

from .detector import ARCHS, CenterNetConfig, Detections, EdgeDetector

__all__ = ["ARCHS", "CenterNetConfig", "Detections", "EdgeDetector"]
