"""What the Build, Train and Run widgets share: their viewer, its model session,
the running worker, the last error, and layer choices that follow the layer list."""

from __future__ import annotations

from typing import Any

import napari.layers
from magicgui.widgets import Container, Select
from qtpy.QtCore import QEvent, QObject

from ._session import session_for
from ._settings import PersistedValues
from ._workers import report_error

# image layers the plugin adds itself: not offered as images to train on or segment
RESULT_IMAGES = ("U-Net probability", "U-Net uncertainty", "U-Net spread")
STATUS_LINES = 4  # the status strip under each widget's controls


class SessionWidget(Container):
    """A labelled container bound to a viewer and that viewer's `ModelSession`.

    ``worker`` is the running napari worker (None when idle) and ``last_error``
    the message of the last error shown (empty when the last action succeeded).
    """

    def __init__(self, napari_viewer: Any):
        super().__init__(labels=False)
        # napari docks ``.native``, which for a scrollable magicgui container is the
        # content, not its scroll area: so the controls live in ``body``, whose scroll
        # area is what this widget shows. Three docks then fit a laptop screen.
        self.body = Container(labels=True, scrollable=True)
        self.native.layout().addWidget(self.body.root_native_widget)
        self.native.layout().setContentsMargins(0, 0, 0, 0)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer, self)
        self.last_error = ""
        self.worker = None
        self.closed = False  # the Qt widget was destroyed (its dock closed)
        for event in ("inserted", "removed", "reordered"):
            self.follow(getattr(self.viewer.layers.events, event), lambda *_: self.reset_choices())
        self.native.destroyed.connect(self._on_destroyed)
        self._undock_watch = _UndockWatch(self._on_destroyed)
        self.native.installEventFilter(self._undock_watch)

    def extend(self, widgets: Any, status: Any = None) -> None:
        """Add controls (into the scrolling ``body``, which scrolls up and down only: it
        is kept as wide as its widest control, so nothing is cut off on the right), and
        the ``status`` label, if any, under them (`pin_status`)."""
        from qtpy.QtWidgets import QComboBox

        self.body.extend(widgets)
        for control in self.body:  # long choices are elided, they do not widen the dock
            if isinstance(control.native, QComboBox):
                control.native.setSizeAdjustPolicy(
                    QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
                control.native.setMinimumContentsLength(12)
        width = self.body.native.minimumSizeHint().width() + 20  # room for the scroll bar
        self.body.root_native_widget.setMinimumWidth(width)
        if status is not None:
            self.pin_status(status)

    def __iter__(self) -> Any:
        return iter(self.body)

    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer choices of every control."""
        self.body.reset_choices(*args)

    def follow(self, signal: Any, callback: Any) -> None:
        """Connect ``callback`` to ``signal`` (of the session or the viewer) for as long as
        this widget exists: after its dock is closed the callback is skipped."""
        def guarded(*args: Any) -> None:
            if not self.closed:
                callback(*args)

        signal.connect(guarded)

    def _on_destroyed(self, *_: Any) -> None:
        self.closed = True
        if self.worker is not None:  # a job of this widget still runs: stop it
            self.session.engine.stop()

    def wait_for_engine(self, title: str, retry: Any) -> bool:
        """True when the model is busy: a background job (a lazy layer filling in) is
        asked to give way and ``retry()`` runs after it; another job is reported as an
        error. False when the model is free."""
        if not self.session.busy:
            return False
        if self.session.when_free(lambda: None if self.closed else retry(), (id(self), title)):
            self.status.value = f"{title}: waiting for the lazy result's current block…"
        else:
            report_error(self, title, self.session.busy_error())
        return True

    def pin_status(self, status: Any) -> None:
        """Show the ``status`` label under the scrolling controls, so what happened (an error
        of Build, Train's progress) is in view however far they are scrolled: a strip of
        `STATUS_LINES` lines that wraps, and scrolls for longer messages."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QFrame, QScrollArea

        self.wrap_labels(status)
        status.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        strip = QScrollArea()
        strip.setObjectName("status_strip")
        strip.setWidgetResizable(True)
        strip.setFrameShape(QFrame.Shape.NoFrame)
        strip.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        strip.setWidget(status.native)
        margins = status.native.contentsMargins()
        strip.setFixedHeight(STATUS_LINES * status.native.fontMetrics().lineSpacing()
                             + margins.top() + margins.bottom() + 16)
        self.native.layout().addWidget(strip)
        label = status.native

        def fit() -> None:  # a word-wrapped label does not tell the strip its height
            label.setMinimumHeight(max(0, label.heightForWidth(strip.viewport().width())))

        # after a resize, a new text (the label asks its parent for a layout) or a tab shown
        self._status_fit = _OnEvents(fit, QEvent.Type.Resize, QEvent.Type.LayoutRequest,
                                     QEvent.Type.Show)
        strip.viewport().installEventFilter(self._status_fit)

    def wrap_labels(self, *labels: Any) -> None:
        """Let long messages in ``labels`` wrap instead of widening the dock for good."""
        from qtpy.QtWidgets import QSizePolicy

        for label in labels:
            label.native.setWordWrap(True)
            label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def remember(self, section: str, controls: list) -> None:
        """Restore ``controls``' values from the last session and save them when they change."""
        self._persist = PersistedValues(section, controls)
        self._persist.restore()
        self._persist.connect()

    def _image_layers(self, *_: Any) -> list:
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, napari.layers.Image)
                and not layer.name.endswith(RESULT_IMAGES)]

    def _other_image_layers(self, *_: Any) -> list:
        """The image layers but the chosen ``image`` (the choices of *more channels*)."""
        chosen = getattr(getattr(self, "image", None), "value", None)
        return [(name, layer) for name, layer in self._image_layers() if layer is not chosen]

    def _labels_layers(self, *_: Any) -> list:
        """The Labels layers to train on or score against: not the live preview's."""
        return [(layer.name, layer) for layer in self.viewer.layers
                if isinstance(layer, napari.layers.Labels)
                and not layer.metadata.get("napari_unet", {}).get("preview")]


class _OnEvents(QObject):
    """Calls ``callback()`` when the watched widget receives an event of one of ``types``."""

    def __init__(self, callback: Any, *types: Any) -> None:
        super().__init__()
        self._callback, self._types = callback, types

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() in self._types:
            self._callback()
        return False


class _UndockWatch(QObject):
    """Calls ``on_close`` when the watched widget leaves its dock: napari's close button
    (and ``remove_dock_widget``) takes the widget out of its dock without destroying it."""

    def __init__(self, on_close: Any) -> None:
        super().__init__()
        self._on_close = on_close
        self._docked = False

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange:
            if obj.parent() is not None:
                self._docked = True
            elif self._docked:
                self._on_close()
        return False


def channel_choice(choices: Any) -> Select:
    """A short list of image layers to use as further channels of the chosen image."""
    select = Select(choices=choices, name="channels", label="more channels",
                    tooltip="Other image layers to use as further channels of the image above, "
                            "in this order (e.g. the layers napari's channel_axis made of one "
                            "multichannel image). None: the image alone.")
    select.native.setMaximumHeight(64)
    return select
