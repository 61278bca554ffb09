"""Run the Keras engine in its own process, for graphical front ends.

napari draws with OpenGL; with Mesa's drivers that puts a second copy of LLVM
into the process, and TensorFlow (which bundles its own LLVM for XLA) can crash
when both are used. So the widgets never import TensorFlow: they drive an
`EngineProcess`, a spawned child process that holds the model, builds, trains,
predicts, loads and saves it, and streams progress back. Side benefits: GPU
memory is returned when the engine ends, and an engine crash cannot take the
viewer down. Scripts and the CLI call the core directly and do not need this.

`EngineProcess.call(method, ...)` is a generator: it yields the progress
events of the call and returns its result; ValueErrors raised in the engine are
raised again as ValueError with the same message.
"""

from __future__ import annotations

import multiprocessing as mp
import threading
import traceback
from typing import Any, Generator

__all__ = ["EngineProcess", "EngineState"]


class EngineState:
    """What lives in the engine process: the current model and the operations on it."""

    def __init__(self, stop_event: Any):
        self.model = None
        self.stop_event = stop_event

    def summary(self) -> dict | None:
        if self.model is None:
            return None
        return {"config": self.model.config.to_dict(), "history": self.model.history,
                "info": self.model.info, "threshold": self.model.threshold,
                "normalization": self.model.normalization.to_dict()}

    def device(self) -> str:
        from .devices import describe_device

        return describe_device()

    def build(self, config: dict) -> dict:
        from .config import UNetConfig
        from .model import UNetModel

        self.model = UNetModel.new(UNetConfig.from_dict(config))
        return self.summary()

    def load(self, path: str) -> dict:
        from .io import load_model

        self.model = load_model(path)
        return self.summary()

    def save(self, path: str) -> str:
        from .io import save_model

        if self.model is None:
            raise ValueError("there is no model yet: build, load or train one first")
        return str(save_model(self.model, path))

    def train(self, images, labels, axes, settings: dict, new_config: dict | None = None):
        from .config import UNetConfig
        from .training import iter_train

        model = self.model
        if model is None:
            model = UNetConfig.from_dict(new_config or {})
        result = yield from iter_train(images, labels, model, axes=axes,
                                       should_stop=self.stop_event.is_set, **settings)
        self.model = result.model
        return self.summary()

    def _model_for(self, model_path: str | None):
        if model_path:
            from .io import load_model

            cached = getattr(self, "_file_model", None)
            if cached is None or cached[0] != model_path:
                self._file_model = (model_path, load_model(model_path))
            return self._file_model[1]
        if self.model is None:
            raise ValueError("there is no model yet: build and train one, or choose a model file")
        return self.model

    def model_summary(self, model_path: str | None = None) -> dict:
        """Summary of the current model, or of the model file at ``model_path``."""
        model = self._model_for(model_path)
        return {"config": model.config.to_dict(), "threshold": model.threshold,
                "normalization": model.normalization.to_dict()}

    def predict_block(self, block, axes: str, stats, model_path: str | None = None,
                      tile_size: int | None = None):
        """Probabilities of one block of a lazy array (see `napari_unet.lazy`)."""
        from .prediction import iter_predict
        from .progress import drain

        return drain(iter_predict(self._model_for(model_path), block, axes=axes, stats=stats,
                                  tile_size=tile_size))

    def predict(self, image, axes: str | None, options: dict, model_path: str | None = None):
        """Returns ``(labels, probabilities or None, axes)``."""
        from . import data as D
        from .postprocess import labels_from_probabilities
        from .prediction import iter_predict

        model = self._model_for(model_path)
        axes = D.resolve_axes(axes, image.shape, model.config.in_channels)
        probs = yield from iter_predict(model, image, axes=axes, tile_size=options.get("tile_size"))
        labels = labels_from_probabilities(
            probs, axes.replace("C", ""), n_classes=model.config.n_classes,
            threshold=options.get("threshold", model.threshold),
            instances=options.get("instances", True), min_size=options.get("min_size", 0),
            split_touching=options.get("split_touching", False),
            link_planes=options.get("link_planes", False))
        return labels, (probs if options.get("probabilities") else None), axes


def _serve(conn: Any, stop_event: Any) -> None:
    """The engine process's loop: receive (method, args, kwargs), send progress and a result."""
    import inspect

    from .progress import drain

    state = EngineState(stop_event)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        method, args, kwargs = message
        try:
            result = getattr(state, method)(*args, **kwargs)
            if inspect.isgenerator(result):
                result = drain(result, lambda event: conn.send(("progress", event)))
            conn.send(("result", result))
        except BaseException as err:  # noqa: BLE001 - every failure goes back to the caller
            conn.send(("error", (type(err).__name__, isinstance(err, ValueError), str(err),
                                 traceback.format_exc())))


class EngineProcess:
    """A spawned process running `EngineState`; started on the first call."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None
        self._stop = self._ctx.Event()
        self._lock = threading.Lock()  # one call at a time through the pipe

    @property
    def busy(self) -> bool:
        """True while a call is running."""
        return self._lock.locked()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self._stop), daemon=True,
                                       name="napari-unet-engine")
        self._proc.start()
        child.close()
        self._conn = parent

    def call(self, method: str, *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        """Run ``method`` in the engine; yields its progress, returns its result.

        If the engine died since the last call, raises RuntimeError once (its
        model is lost); the next call starts a fresh engine. Calls from several
        threads wait for each other.
        """
        with self._lock:
            return (yield from self._call(method, args, kwargs))

    def _call(self, method: str, args: tuple, kwargs: dict):
        if self._proc is not None and not self._proc.is_alive():
            code = self._proc.exitcode
            self._proc = None
            raise RuntimeError(
                f"The napari-unet engine process ended unexpectedly (exit code {code}); "
                "its model is lost. Build or load a model to start again.")
        if self._proc is None:
            self.start()
        self._stop.clear()
        self._conn.send((method, args, kwargs))
        while True:
            try:
                kind, payload = self._conn.recv()
            except (EOFError, OSError):
                code = self._proc.exitcode if self._proc is not None else None
                self._proc = None
                raise RuntimeError(
                    f"The napari-unet engine process ended unexpectedly (exit code {code}); "
                    "its model is lost. Build or load a model to start again.") from None
            if kind == "progress":
                yield payload
            elif kind == "result":
                return payload
            else:
                name, is_value_error, message, tb = payload
                if is_value_error:
                    raise ValueError(message)
                if name == "MemoryError":
                    raise MemoryError(message)
                raise RuntimeError(f"{name}: {message}\n(engine traceback)\n{tb}")

    def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`call` without progress: returns the result."""
        from .progress import drain

        return drain(self.call(method, *args, **kwargs))

    def request_stop(self) -> None:
        """Ask a running training to stop after its current batch."""
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        """End the engine process (its model is lost)."""
        if self._proc is None:
            return
        try:
            self._conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout)
        self._conn.close()
        self._proc = None
