"""U-Net — Build, Train and Run as tabs of one dock: the whole plugin fits a 1280x800
screen beside the canvas (three separate docks stack and leave each a strip)."""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QTabWidget

from ._base import _UndockWatch
from .build import BuildWidget
from .run import RunWidget
from .train import TrainWidget

__all__ = ["UNetDock"]


class UNetDock(QTabWidget):
    """One dock with a tab per widget; ``build``, ``train`` and ``run`` are the widgets
    (they share the viewer's model session as separate docks do). Closing the dock stops
    their jobs as closing their own docks would."""

    def __init__(self, napari_viewer: Any):
        super().__init__()
        self.setObjectName("napari-unet")
        self.build = BuildWidget(napari_viewer)
        self.train = TrainWidget(napari_viewer)
        self.run = RunWidget(napari_viewer)
        for title, widget, tip in (
                ("Build", self.build, "Choose the architecture; build, load, save or export a model."),
                ("Train", self.train, "Train the model on image/labels layers or scribbles."),
                ("Run", self.run, "Segment an image layer or a folder; evaluate against truth.")):
            self.setTabToolTip(self.addTab(widget.native, title), tip)
        widgets = self.widgets  # (not self: the Qt object is gone when destroyed fires)

        def close(*_: Any) -> None:
            for widget in widgets:
                widget._on_destroyed()

        self._undock_watch = _UndockWatch(close)
        self.installEventFilter(self._undock_watch)
        self.destroyed.connect(close)

    @property
    def widgets(self) -> tuple[BuildWidget, TrainWidget, RunWidget]:
        return self.build, self.train, self.run
