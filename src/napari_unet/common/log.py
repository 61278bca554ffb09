"""The library's logger: ``logging.getLogger("napari_unet")``.

Library code reports what it did (files read with their axes and pixel sizes, files of a
folder done or failed) here instead of printing; an application chooses what to show
(``logging.basicConfig(level=logging.INFO)``; the command line shows it with ``--debug``).
Until then nothing is printed: the logger has a ``NullHandler`` (the usual choice for a
library), so a script's own logging set-up decides.
"""

from __future__ import annotations

import logging

__all__ = ["logger", "LOGGER_NAME"]

LOGGER_NAME = "napari_unet"

logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())
