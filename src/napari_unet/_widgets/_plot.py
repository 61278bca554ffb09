"""A small live plot of training curves (matplotlib in Qt), for the Train widget."""

from __future__ import annotations

from typing import Any

from magicgui.widgets import Container


class LossPlot(Container):
    """Loss (left) and IoU (right) per epoch, training solid and validation dashed."""

    def __init__(self, theme: str = "dark") -> None:
        super().__init__(labels=False, name="plot", label="curves")
        self.colours = _theme_colours(theme)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.0, 2.2), dpi=80)
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

    def set_theme(self, theme: str) -> None:
        """Follow napari's theme (``"dark"``, ``"light"``, ...): background, text, lines."""
        self.colours = _theme_colours(theme)
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
        from matplotlib.ticker import MaxNLocator

        background, text, lines = self.colours
        self.figure.set_facecolor(background)
        for legend in list(self.figure.legends):
            legend.remove()
        epochs = max((len(v) for v in self.history.values()), default=0)
        for ax, metric in ((self.loss_ax, "loss"), (self.iou_ax, "iou")):
            ax.clear()
            ax.set_facecolor(background)
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = self.history.get(key)
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, marker="o", ms=3,
                            color=lines[key.startswith("val")],
                            label="validation" if key.startswith("val") else "training")
            ax.set_title(metric, fontsize=9, color=text)
            ax.set_xlabel("epoch", fontsize=8, color=text)
            ax.set_xlim(0.5, max(epochs, 1) + 0.5)  # one epoch is one tick, not 0.9 / 0.95 / 1.0
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True, min_n_ticks=1))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
            ax.tick_params(labelsize=7, colors=text)
            for spine in ax.spines.values():
                spine.set_color(text)
        top = 1.0
        if self.history.get("loss"):  # one legend for both axes, above them: the same lines
            handles, names = self.loss_ax.get_legend_handles_labels()
            self.figure.legend(handles, names, fontsize=7, labelcolor=text, loc="upper center",
                               ncol=2, frameon=False)
            top = 0.88
        self.figure.tight_layout(rect=(0, 0, 1, top), pad=0.4)
        self.canvas.draw_idle()


def _theme_colours(theme: str) -> tuple[str, str, tuple[str, str]]:
    """(background, text, (training line, validation line)) of napari theme ``theme``
    (its own colours; a theme napari does not know falls back to "dark")."""
    from napari.utils.theme import available_themes, get_theme

    palette = get_theme(theme if theme in available_themes() else "dark")
    return (palette.background.as_hex(), palette.text.as_hex(),
            (palette.current.as_hex(), palette.warning.as_hex()))
