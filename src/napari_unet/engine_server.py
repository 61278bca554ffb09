"""The engine process's side of `napari_unet.engine` (why there is one: see there).

``python -m napari_unet.engine_server`` reads a key from standard input, prints the
address to connect to, and serves one `EngineClient`: each call is a method name of
`EngineState` with its arguments; it answers with progress events, then a result, an
error or "cancelled". Nothing here runs in the viewer's process.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from multiprocessing.connection import Listener
from typing import Any

from .model_summary import ModelSummary

__all__ = ["EngineState", "main"]


class EngineState:
    """What lives in the engine process: the current model and the operations on it."""

    def __init__(self, stop_event: Any):
        self.model = None
        self.stop_event = stop_event

    def summary(self) -> ModelSummary | None:
        return None if self.model is None else ModelSummary.of(self.model)

    def device(self) -> str:
        from .keras_backend import describe_device

        return describe_device()

    def build(self, config: dict) -> ModelSummary | None:
        from .config import UNetConfig
        from .model import UNetModel

        self.model = UNetModel.new(UNetConfig.from_dict(config))
        return self.summary()

    def load(self, path: str) -> ModelSummary | None:
        from .model_files import load_model

        self.model = load_model(path)
        return self.summary()

    def save(self, path: str) -> str:
        from .model_files import save_model

        if self.model is None:
            raise ValueError("there is no model yet: build, load or train one first")
        return str(save_model(self.model, path))

    def export_bioimageio(self, path: str, name: str | None = None) -> str:
        """Write the current model as a bioimage.io package (replacing ``path``)."""
        from .bioimageio_export import export_bioimageio

        if self.model is None:
            raise ValueError("there is no model yet: build, load or train one first")
        return str(export_bioimageio(self.model, path, name=name, overwrite=True))

    def train(self, images, labels, axes, settings: dict, new_config: dict | None = None,
              preview=None, class_names=None, names=None):
        """Train the current model further (a new one from ``new_config`` when there is
        none; a built, untrained one is rebuilt so the labels choose its target), yielding
        progress and `TrainPreview`s of ``preview``; returns the summary."""
        from .config import UNetConfig
        from .training import iter_train

        model = self.model
        if model is None:
            model = UNetConfig.from_dict(new_config or {})
        elif not model.history:
            model = model.config
        result = yield from iter_train(images, labels, model, axes=axes, preview=preview,
                                       class_names=class_names, names=names,
                                       should_stop=self.stop_event.is_set, **settings)
        self.model = result.model
        return self.summary()

    def train_folder(self, images_dir: str, masks_dir: str, axes, settings: dict,
                     new_config: dict | None = None, preview=None):
        """`train` on the image/mask file pairs of two folders, read here (not in the viewer)."""
        from .image_files import read_training_folder

        images, masks, names = read_training_folder(images_dir, masks_dir,
                                                    ("images folder", "masks folder"))
        if new_config is not None and axes and "C" in axes:  # a new network: its channels
            from .arrays import check_axes

            axes = check_axes(axes, images[0].shape)
            new_config = {**new_config, "in_channels": images[0].shape[axes.index("C")]}
        return (yield from self.train(images, masks, axes, settings, new_config, preview,
                                      names=names))

    def uncertainty(self, image, axes: str | None, passes: int, *, tile_size: int | None = None,
                    model_path: str | None = None):
        """Monte-Carlo dropout maps of ``image`` (`napari_unet.uncertainty`), yielding
        progress; returns ``(entropy, spread)``."""
        from .uncertainty import iter_uncertainty

        result = yield from iter_uncertainty(self._model_for(model_path), image, passes,
                                             axes=axes, tile_size=tile_size)
        return result.entropy, result.spread

    def uncertainty_block(self, block, axes: str, stats, origin, passes: int, *,
                          model_path: str | None = None, tile_size: int | None = None):
        """Entropy and spread of one block of a lazy array, stacked on a last axis."""
        from .uncertainty import block_maps

        return block_maps(self._model_for(model_path), block, axes, stats, origin, passes,
                          tile_size, probabilities=False)

    def _model_for(self, model_path: str | None):
        if model_path:
            from .model_files import load_model

            cached = getattr(self, "_file_model", None)
            if cached is None or cached[0] != model_path:
                self._file_model = (model_path, load_model(model_path))
            return self._file_model[1]
        if self.model is None:
            raise ValueError("there is no model yet: build and train one, or choose a model file")
        return self.model

    def model_summary(self, model_path: str | None = None) -> ModelSummary:
        """Summary of the current model, or of the model file at ``model_path``."""
        return ModelSummary.of(self._model_for(model_path))

    def predict_block(self, block, axes: str, stats, *, model_path: str | None = None,
                      tile_size: int | None = None):
        """Probabilities of one block of a lazy array (see `napari_unet.lazy`)."""
        from .inference import iter_probabilities
        from .progress import drain

        return drain(iter_probabilities(self._model_for(model_path), block, axes=axes,
                                        stats=stats, tile_size=tile_size))

    def predict_folder(self, in_dir: str, out_dir: str, options, *, tile_size: int | None = None,
                       model_path: str | None = None):
        """Every image of ``in_dir`` into ``out_dir`` (`napari_unet.folders`), yielding a
        `FileResult` per file; returns the list of them."""
        from .folders import iter_predict_folder

        return (yield from iter_predict_folder(self._model_for(model_path), in_dir, out_dir,
                                               options, tile_size=tile_size))

    def segment(self, image, axes: str | None, options, *, tile_size: int | None = None,
                probabilities: bool = False, model_path: str | None = None):
        """Labels of ``image`` with `LabelOptions` ``options``, yielding progress; returns
        ``(labels, probabilities or None, axes)``."""
        from .arrays import resolve_axes
        from .prediction import iter_segment

        model = self._model_for(model_path)
        axes = resolve_axes(axes, image.shape, model.config.in_channels)
        probs, labels = yield from iter_segment(model, image, options, axes=axes,
                                                tile_size=tile_size)
        return labels, (probs if probabilities else None), axes


def _serve(conn: Any, stop_event: threading.Event) -> None:
    """The engine process's loop: receive (method, args, kwargs), send progress and a result."""
    import inspect

    state = EngineState(stop_event)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        method, args, kwargs = message
        stop_event.clear()
        try:
            result = getattr(state, method)(*args, **kwargs)
            if inspect.isgenerator(result):
                result = _drain_cancellable(result, conn, stop_event,
                                            cancellable=method not in _STOPPABLE)
            conn.send(("result", result))
        except _Cancelled:
            conn.send(("cancelled", method))
        except BaseException as err:  # noqa: BLE001 - every failure goes back to the caller
            conn.send(("error", (type(err).__name__, _kind(err), str(err),
                                 traceback.format_exc())))


# jobs that end themselves when asked to stop, keeping what they made (training keeps its
# best weights); every other job is cancelled after its current step, with no result
_STOPPABLE = ("train", "train_folder")


class _Cancelled(Exception):
    """In the engine: a job was cancelled (`EngineClient.stop`)."""


def _drain_cancellable(gen: Any, conn: Any, stop_event: threading.Event,
                       cancellable: bool) -> Any:
    """`drain` ``gen``, sending each event as progress; returns its result. When
    ``cancellable`` and ``stop_event`` is set after an event, the job is closed and
    `_Cancelled` raised."""
    from .progress import drain

    def send(event: Any) -> None:
        conn.send(("progress", event))
        if cancellable and stop_event.is_set():
            raise _Cancelled()

    try:
        return drain(gen, send)
    finally:
        gen.close()  # a cancelled job ends now (closing a finished one does nothing)


def _kind(err: BaseException) -> str:
    """How an engine error is raised again in the caller's process."""
    from .model_files import ModelFileError

    for kind in (ModelFileError, ValueError, MemoryError):
        if isinstance(err, kind):
            return kind.__name__
    return "other"


def _listen_for_stop(control: Any, stop_event: threading.Event) -> None:
    """In the engine: set ``stop_event`` whenever the parent asks to stop (a daemon thread)."""
    while True:
        try:
            control.recv()
        except (EOFError, OSError):
            stop_event.set()  # the parent is gone: end what runs
            return
        stop_event.set()


def main() -> None:
    """Entry point of ``python -m napari_unet.engine_server``: read the key from standard input,
    print the address to connect to, accept the call and control connections, serve."""
    key = bytes.fromhex(sys.stdin.readline().strip())
    if hasattr(os, "nice"):  # training uses every core: the viewer's process goes first
        os.nice(10)
    listener = Listener(authkey=key)
    print(listener.address, flush=True)
    os.dup2(2, 1)  # from now on, stray output goes to standard error, not the closed pipe
    conn, control = listener.accept(), listener.accept()
    listener.close()
    stop_event = threading.Event()
    threading.Thread(target=_listen_for_stop, args=(control, stop_event), daemon=True).start()
    _serve(conn, stop_event)


if __name__ == "__main__":
    main()
