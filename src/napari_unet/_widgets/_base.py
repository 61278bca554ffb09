"""What the Build, Train and Run widgets share: their viewer, its model session,
the running worker, the last error, and layer choices that follow the layer list."""

from __future__ import annotations

from typing import Any

import napari.layers
from magicgui.widgets import Container

from ._session import session_for
from ._settings import PersistedValues


class SessionWidget(Container):
    """A labelled container bound to a viewer and that viewer's `ModelSession`.

    ``worker`` is the running napari worker (None when idle) and ``last_error``
    the message of the last error shown (empty when the last action succeeded).
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer, self)
        self.last_error = ""
        self.worker = None
        for event in ("inserted", "removed", "reordered"):
            getattr(self.viewer.layers.events, event).connect(lambda *_: self.reset_choices())

    def remember(self, section: str, controls: list) -> None:
        """Restore ``controls``' values from the last session and save them when they change."""
        self._persist = PersistedValues(section, controls)
        self._persist.restore()
        self._persist.connect()

    def _image_layers(self, *_: Any) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, napari.layers.Image)
                and not layer.name.endswith("U-Net probability")]

    def _labels_layers(self, *_: Any) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, napari.layers.Labels)]
