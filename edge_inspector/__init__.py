"""edge-inspector: visual inspection daemon for production lines and the toolchain behind its models."""

import os

# OpenCV reads its decode limit once, when the library loads: set it before anything imports cv2 so a
# 30000x30000 PNG is refused from its header instead of being decoded into ~900 MB first. Kept equal
# to preprocess.MAX_PIXELS; an operator's own setting wins.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "50000000")

__version__ = "0.1.0"
