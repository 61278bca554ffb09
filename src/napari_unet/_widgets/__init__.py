"""magicgui/Qt widgets for napari. No ML logic here: widgets read layers, run the core
(`napari_unet.training`, `napari_unet.prediction.api`, ...) in a napari worker, and turn the
results back into layers. Nothing in this package imports TensorFlow at import time.
"""

from .build import BuildWidget
from .dock import UNetDock
from .run import RunWidget
from .train import TrainWidget

__all__ = ["BuildWidget", "TrainWidget", "RunWidget", "UNetDock"]
