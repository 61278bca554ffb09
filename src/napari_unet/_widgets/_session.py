"""The model shared by the Build, Train and Run widgets of one viewer.

Each viewer has one `ModelSession`; widgets get it with `session_for(viewer)`.
The registry is keyed by the viewer's hash (its identity, also through napari's
plugin proxies) and an entry is dropped when the last widget using it is destroyed.
"""

from __future__ import annotations

from typing import Any, Callable

from psygnal import Signal
from qtpy.QtCore import QTimer

from ..engine.client import EngineClient
from ..model.summary import ModelSummary


class ModelSession:
    """The engine process holding a viewer's model, a summary of that model, and
    whether a worker is using it.

    The model itself lives in the engine process (see `napari_unet.engine.client`);
    the GUI keeps only its `ModelSummary` (config, history, info) to show it.
    Signals: ``changed(str)`` with a one-line description when the model is
    replaced; ``busy_changed(bool)`` when a job starts or ends.
    """

    changed = Signal(str)
    busy_changed = Signal(bool)

    def __init__(self) -> None:
        self.engine = EngineClient()
        self.summary: ModelSummary | None = None  # set from the GUI thread only
        self.description = "no model yet: build or load one"
        self.busy = False
        self.doing = ""  # what the running job does, for messages
        self._give_way = None  # how the running background job gives way (see set_busy)
        self._waiting: list[tuple[Any, Callable[[], None]]] = []  # (key, action): `when_free`

    @property
    def has_model(self) -> bool:
        return self.summary is not None

    def set_summary(self, summary: ModelSummary | None, description: str) -> None:
        self.summary = summary
        self.description = description
        self.changed.emit(description)

    def set_busy(self, busy: bool, doing: str = "",
                 give_way: Callable[[], None] | None = None) -> None:
        """Start (``busy``; ``doing`` says what, e.g. "training") or end a job. A
        background job (a lazy layer filling in) passes ``give_way``, which asks it to
        end soon. When a job ends, the first action waiting for the model runs."""
        self.busy, self.doing = busy, (doing if busy else "")
        self._give_way = give_way if busy else None
        if not busy and self._waiting:  # before busy_changed, which may restart a fill
            QTimer.singleShot(0, self._run_waiting)
        self.busy_changed.emit(busy)

    def _run_waiting(self) -> None:
        """Run the actions waiting for the model, until one of them starts a job."""
        from napari.utils.notifications import show_error

        while self._waiting and not self.busy:
            _, action = self._waiting.pop(0)
            try:
                action()
            except Exception as err:  # noqa: BLE001 - one failing action must not strand the rest
                show_error(f"{type(err).__name__}: {err}")

    @property
    def blocked(self) -> bool:
        """A job runs that other actions must wait for (a background job gives way)."""
        return self.busy and self._give_way is None

    def when_free(self, action: Callable[[], None], key: Any = None) -> bool:
        """While a background job runs: ask it to give way, and run ``action()`` when the
        model is free (after the actions queued before it); True. An action with the
        ``key`` of one already waiting is not queued twice (a double click). False when
        no job runs, or one that does not give way."""
        if not self.busy or self._give_way is None:
            return False
        if key is None or all(key != k for k, _ in self._waiting):
            self._waiting.append((key, action))
        self._give_way()
        return True

    def busy_error(self) -> ValueError:
        """The error for an action refused because a job runs."""
        doing = f" {self.doing}" if self.doing else ""
        return ValueError(f"the model is busy{doing}; wait for it, or press Stop (Train) or "
                          "Cancel (Run)")


_sessions: dict[int, tuple[ModelSession, set[int]]] = {}


def session_for(viewer: Any, widget: Any) -> ModelSession:
    """The session of ``viewer``; ``widget`` (a magicgui widget) holds it until destroyed."""
    key = hash(viewer)
    if key not in _sessions:
        _sessions[key] = (ModelSession(), set())
    session, users = _sessions[key]
    users.add(id(widget))

    def release(*_: Any) -> None:
        users.discard(id(widget))
        if not users:
            _sessions.pop(key, None)
            session.engine.close()

    widget.native.destroyed.connect(release)
    return session
