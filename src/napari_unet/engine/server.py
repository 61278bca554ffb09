"""The engine process's side of `napari_unet.engine.client` (why there is one: see there).

``python -m napari_unet.engine.server`` reads a key from standard input, prints the
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
from typing import TYPE_CHECKING, Any

from ..model.summary import ModelSummary

if TYPE_CHECKING:  # pragma: no cover
    from ..labels.options import LabelOptions
    from ..model.config import UNetConfig
    from ..model.normalization import PercentileNormalization
    from ..training.request import TrainRequest

__all__ = ["EngineState", "main"]


class EngineState:
    """What lives in the engine process: the current model and the operations on it (an
    `napari_unet.engine.protocol.Engine`). ``stop_event`` is set when the client asks
    the running job to stop."""

    def __init__(self, stop_event: Any):
        self.model: Any = None  # the engine's UNetModel
        self.stop_event = stop_event
        self._file_model: tuple[str, Any] | None = None  # (path, UNetModel) of model_path

    def device(self) -> str:
        from ..backend.devices import describe_device

        return describe_device()

    def summary(self) -> ModelSummary | None:
        return None if self.model is None else self.model.summary

    def model_summary(self, model_path: str | None = None) -> ModelSummary:
        return self._model_for(model_path).summary

    def build(self, config: UNetConfig,
              normalization: PercentileNormalization | None = None) -> ModelSummary:
        from ..model.normalization import PercentileNormalization
        from ..model.unet import UNetModel

        self.model = UNetModel.new(config, normalization=normalization or PercentileNormalization())
        return self.model.summary

    def load(self, path: str) -> ModelSummary:
        from ..model.files import load_model

        self.model = load_model(path)
        return self.model.summary

    def save(self, path: str) -> str:
        from ..model.files import save_model

        return str(save_model(self._model_for(None), path))

    def export_bioimageio(self, path: str, name: str | None = None) -> str:
        """Write the current model as a bioimage.io package (replacing ``path``)."""
        from ..bioimageio.export import export_bioimageio

        return str(export_bioimageio(self._model_for(None), path, name=name, overwrite=True))

    def train(self, request: TrainRequest):
        """Train the current model further (`napari_unet.training.job.iter_train_request`:
        a new one from the request's config when there is none), yielding progress and
        previews; returns the trained model's summary."""
        from ..training.job import iter_train_request

        result = yield from iter_train_request(request, self.model, self.stop_event.is_set)
        self.model = result.model
        return self.model.summary

    def segment(self, image, axes: str | None, options: LabelOptions, *,
                tile_size: int | None = None, probabilities: bool = False,
                model_path: str | None = None):
        """Labels of ``image`` with `LabelOptions` ``options``, yielding progress; returns
        ``(labels, probabilities or None, axes)``; the model and axes are resolved once
        (`napari_unet.prediction.api.plan_run`)."""
        from ..prediction.api import iter_run, plan_run

        run = plan_run(self._model_for(model_path), image.shape, options, axes)
        probs, labels = yield from iter_run(run, image, probabilities, tile_size=tile_size)
        return labels, probs, run.axes

    def uncertainty(self, image, axes: str | None, passes: int, *, tile_size: int | None = None,
                    model_path: str | None = None):
        """Monte-Carlo dropout maps of ``image`` (`napari_unet.prediction.uncertainty`), yielding
        progress; returns ``(entropy, spread)``."""
        from ..prediction.uncertainty import iter_uncertainty

        result = yield from iter_uncertainty(self._model_for(model_path), image, passes,
                                             axes=axes, tile_size=tile_size)
        return result.entropy, result.spread

    def predict_folder(self, in_dir: str, out_dir: str, options: LabelOptions, *,
                       tile_size: int | None = None, model_path: str | None = None):
        """Every image of ``in_dir`` into ``out_dir`` (`napari_unet.prediction.folders`),
        yielding a `FileResult` per file; returns the list of them."""
        from ..prediction.folders import iter_predict_folder

        return (yield from iter_predict_folder(self._model_for(model_path), in_dir, out_dir,
                                               options, tile_size=tile_size))

    def predict_block(self, block, axes: str, stats, *, model_path: str | None = None,
                      tile_size: int | None = None):
        """Probabilities of one block of a lazy array (see `napari_unet.prediction.lazy`)."""
        from ..common.progress import drain
        from ..prediction.tiled import iter_probabilities

        return drain(iter_probabilities(self._model_for(model_path), block, axes=axes,
                                        stats=stats, tile_size=tile_size))

    def uncertainty_block(self, block, axes: str, stats, origin, passes: int, *,
                          model_path: str | None = None, tile_size: int | None = None):
        """Entropy and spread of one block of a lazy array, stacked on a last axis."""
        from ..prediction.uncertainty import block_maps

        return block_maps(self._model_for(model_path), block, axes, stats, origin, passes,
                          tile_size, probabilities=False)

    def _model_for(self, model_path: str | None) -> Any:
        """The model file ``model_path`` (loaded once while it is asked for again), else
        the engine's model; ``ValueError`` when there is none."""
        if model_path:
            from ..model.files import load_model

            if self._file_model is None or self._file_model[0] != model_path:
                self._file_model = (model_path, load_model(model_path))
            return self._file_model[1]
        if self.model is None:
            raise ValueError("there is no model yet: build, load or train one first, or choose "
                             "a model file")
        return self.model


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
_STOPPABLE = ("train",)


class _Cancelled(Exception):
    """In the engine: a job was cancelled (`EngineClient.stop`)."""


def _drain_cancellable(gen: Any, conn: Any, stop_event: threading.Event,
                       cancellable: bool) -> Any:
    """`drain` ``gen``, sending each event as progress; returns its result. When
    ``cancellable`` and ``stop_event`` is set after an event, the job is closed and
    `_Cancelled` raised."""
    from ..common.progress import drain

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
    from ..model.files import ModelFileError

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
    """Entry point of ``python -m napari_unet.engine.server``: read the key from standard input,
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
