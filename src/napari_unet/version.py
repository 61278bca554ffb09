"""The installed package's version, for model files, ``--version`` and the widgets."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-unet")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"
