"""medseg: semantic segmentation of medical images with the U-Net family.

Importing this package has no side effects and imports no heavy library; the public API lives in the
sub-packages (``medseg.data``, ``medseg.models``, ...).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
