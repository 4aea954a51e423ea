"""ovformer: open-vocabulary video instance segmentation (OVFormer, ECCV 2024) without detectron2."""

from ovformer_core.errors import OVFormerError

__version__ = "0.1.0"

__all__ = ["OVFormerError", "__version__"]
