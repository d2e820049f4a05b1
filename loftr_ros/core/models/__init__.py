"""Models implemented natively in loftr_ros (no third-party model code)."""
from loftr_ros.core.models.efficientloftr import EfficientLoFTR, ImageFeatures

__all__ = ['EfficientLoFTR', 'ImageFeatures']
