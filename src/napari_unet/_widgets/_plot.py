"""A small live plot of training curves (matplotlib in Qt), for the Train widget."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container


class LossPlot(Container):
    """Loss (left) and IoU (right) per epoch, training solid and validation dashed."""

    def __init__(self) -> None:
        super().__init__(labels=False, name="plot", label="curves")
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.0, 2.2), dpi=80, tight_layout=True)
        self.loss_ax, self.iou_ax = self.figure.subplots(1, 2)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(160, 170)  # narrow docks: the figure shrinks, not the dock
        from qtpy.QtWidgets import QSizePolicy

        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.canvas.setToolTip("Loss and IoU after every epoch: training (solid), validation (dashed).")
        self.native.layout().addWidget(self.canvas)
        self.tooltip = "Loss and IoU after every epoch: training (solid), validation (dashed)."
        self.history: dict[str, list[float]] = {}
        self.draw()

    def clear(self) -> None:
        self.show_history({})

    def show_history(self, history: dict[str, list[float]]) -> None:
        """Show a whole training history (per-epoch lists of ``loss``, ``iou``, ``val_*``)."""
        self.history = {key: [float(v) for v in values] for key, values in history.items()}
        self.draw()

    def add_epoch(self, logs: dict[str, Any]) -> None:
        """Append one epoch's values; a metric missing on either side (a round without
        validation) is NaN there, so every curve stays aligned with its epochs."""
        epochs = max((len(v) for v in self.history.values()), default=0)
        for key in set(self.history) | set(logs):
            values = self.history.setdefault(key, [])
            values.extend([float("nan")] * (epochs - len(values)))
            values.append(float(logs.get(key, float("nan"))))
        self.draw()

    def draw(self) -> None:
        for ax, metric in ((self.loss_ax, "loss"), (self.iou_ax, "iou")):
            ax.clear()
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = self.history.get(key)
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3,
                            label="validation" if key.startswith("val") else "training")
            ax.set_title(metric, fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            if self.history.get(metric):
                ax.legend(fontsize=7)
        self.canvas.draw_idle()
