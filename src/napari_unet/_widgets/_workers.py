"""Start napari workers and report their errors as notifications (no ML here)."""

from __future__ import annotations

from typing import Any, Callable

import napari.layers
from napari.utils.notifications import show_error, show_info


def start_worker(job: Callable, *args: Any, on_yield: Callable | None = None,
                 on_return: Callable | None = None, on_error: Callable | None = None,
                 on_finish: Callable | None = None, **kwargs: Any):
    """Run ``job(*args, **kwargs)`` (a function or generator) in a napari thread worker.

    Callbacks run in the GUI thread. An exception in the job is passed to
    ``on_error`` (never swallowed) and ``on_finish`` always runs afterwards.
    """
    import inspect

    from napari.qt.threading import create_worker

    if not inspect.isgeneratorfunction(job):  # a function worker has no "yielded"
        on_yield = None
    connect = {name: callback for name, callback in (
        ("yielded", on_yield), ("returned", on_return), ("errored", on_error),
        ("finished", on_finish)) if callback is not None}
    # giving "errored" here replaces superqt's default handler, which re-raises in the GUI
    worker = create_worker(job, *args, _start_thread=False, _connect=connect, **kwargs)
    worker.start()
    return worker


class ActivityProgress:
    """One job's bar in napari's activity dock (``napari.utils.progress``, with its rate
    and time left), driven from the GUI thread; `close` removes it.

    Updates are applied from the event loop, not inside the caller: napari's bar
    processes events when it changes, which would otherwise run a job's later
    signals (even its end) in the middle of the handler that reported progress.
    """

    def __init__(self, desc: str):
        from napari.utils import progress

        self.bar = progress(total=0, desc=desc)
        self.closed = False
        self._latest: tuple | None = None  # (done, total, desc) not shown yet

    def show(self, done: int, total: int, desc: str | None = None) -> None:
        """``done`` of ``total`` steps; ``desc`` replaces the description."""
        from qtpy.QtCore import QTimer

        if desc is None and self._latest is not None:
            desc = self._latest[2]
        scheduled = self._latest is not None
        self._latest = (done, total, desc)
        if not scheduled:
            QTimer.singleShot(0, self._apply)

    @property
    def state(self) -> tuple[int, int]:
        """(done, total) as last reported (shown at the next turn of the event loop)."""
        return self._latest[:2] if self._latest is not None else (self.bar.n, self.bar.total)

    def _apply(self) -> None:
        latest, self._latest = self._latest, None
        if self.closed or latest is None:
            return
        done, total, desc = latest
        if total != self.bar.total:
            self.bar.total = total
        if desc is not None:
            self.bar.set_description(desc)
        if done >= self.bar.n:
            self.bar.update(done - self.bar.n)
        else:  # a new phase that counts from 0 again (e.g. the uncertainty after labels)
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        self.closed = True
        self.bar.close()


def report_error(widget: Any, title: str, err: BaseException) -> None:
    """Show ``err`` as a napari error notification and remember it on ``widget.last_error``.

    When the engine process died or was closed, its model is gone: the session
    forgets it, so every widget says so and the next action starts a new engine.
    """
    from ..engine.client import EngineError

    if isinstance(err, (ValueError, EngineError)):
        message = f"{title}: {err}"
    else:
        message = f"{title}: {type(err).__name__}: {err}"
    widget.last_error = message
    if not getattr(widget, "closed", False):
        widget.status.value = message
    show_error(message)
    if isinstance(err, EngineError) and not widget.session.engine.alive:
        widget.session.set_summary(None, "the engine ended and its model is lost: build or "
                                         "load a model to go on")


def report_info(widget: Any, message: str) -> None:
    widget.status.value = message
    show_info(message)


def apply_layer_tuples(viewer: Any, tuples: list[tuple]) -> list[Any]:
    """Add LayerDataTuples to ``viewer``, updating layers of the same name and kind in place
    (data, ``scale``, ``translate``, ``metadata``; a multiscale one is made again), except a
    Labels layer painted on since
    napari-unet wrote it: the hand edits stay, and the new labels go to "<name> (2)" (or
    the first such copy not painted on either). Returns the layers. Must run in the GUI thread."""
    layers = []
    for data, meta, kind in tuples:
        meta = dict(meta)
        name = meta.get("name")
        existing = viewer.layers[name] if name in viewer.layers else None
        layer_class = {"labels": napari.layers.Labels, "image": napari.layers.Image}[kind]
        if isinstance(existing, napari.layers.Labels) and edited(existing):
            meta["name"] = _free_name(viewer, name)  # an unedited copy is updated again
            existing = viewer.layers[meta["name"]] if meta["name"] in viewer.layers else None
        if existing is not None and (existing.multiscale or meta.get("multiscale")):
            viewer.layers.remove(existing)  # napari fixes a layer's levels when it is made
            existing = None
        if existing is not None and isinstance(existing, layer_class):
            existing.data = data
            for key in ("scale", "translate", "metadata"):
                if key in meta:
                    setattr(existing, key, meta[key])
            layer = existing
        else:
            layer = getattr(viewer, f"add_{kind}")(data, **meta)
        if isinstance(layer, napari.layers.Labels):
            _watch_edits(layer)
        layers.append(layer)
    return layers


def edited(layer: Any) -> bool:
    """Whether a Labels layer napari-unet wrote was painted on since (by hand)."""
    return bool(layer.metadata.get("napari_unet", {}).get("edited"))


def _watch_edits(layer: Any) -> None:
    """Mark ``layer`` edited (in its metadata) when it is painted, filled or erased."""
    layer.metadata = {**layer.metadata, "napari_unet": {
        **layer.metadata.get("napari_unet", {}), "edited": False}}
    layer.events.paint.connect(_mark_edited)  # (napari connects a callback once)


def _mark_edited(event: Any) -> None:
    info = event.source.metadata.get("napari_unet")
    if info is not None:
        info["edited"] = True


def _free_name(viewer: Any, name: str) -> str:
    """``name (2)``, ``name (3)`` ...: the first that is not a hand-edited Labels layer of
    ``viewer`` (an earlier copy that was not painted on, or a name not taken)."""
    number = 2
    while f"{name} ({number})" in viewer.layers:
        layer = viewer.layers[f"{name} ({number})"]
        if isinstance(layer, napari.layers.Labels) and not edited(layer):
            break
        number += 1
    return f"{name} ({number})"
