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
raised again as ValueError with the same message. `EngineProcess.close` asks a
running training to stop, lets the engine exit by itself (terminating it only if
it does not), and a call it interrupts raises `EngineClosed`.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import traceback
from typing import Any, Generator

__all__ = ["EngineClosed", "EngineProcess", "EngineState"]


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
        from .keras_backend import describe_device

        return describe_device()

    def build(self, config: dict) -> dict:
        from .config import UNetConfig
        from .model import UNetModel

        self.model = UNetModel.new(UNetConfig.from_dict(config))
        return self.summary()

    def load(self, path: str) -> dict:
        from .model_files import load_model

        self.model = load_model(path)
        return self.summary()

    def save(self, path: str) -> str:
        from .model_files import save_model

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
            from .model_files import load_model

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
        from .inference import iter_probabilities
        from .progress import drain

        return drain(iter_probabilities(self._model_for(model_path), block, axes=axes,
                                        stats=stats, tile_size=tile_size))

    def segment(self, image, axes: str | None, options, tile_size: int | None = None,
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


class EngineClosed(RuntimeError):
    """`EngineProcess.close` ended the engine while a call was running; its model is lost."""


class _Child:
    """One engine process, the parent's end of its pipe, and a thread that reaps it.

    The reaper thread is the only one that waits for the process, so a process
    that dies while idle (e.g. killed for lack of memory) does not stay a zombie,
    and its exit code is known once ``alive`` is False.
    """

    def __init__(self, ctx: Any, stop_event: Any) -> None:
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, stop_event), daemon=True,
                                name="napari-unet-engine")
        self.proc.start()
        child.close()
        self.conn = parent
        self.closing = threading.Event()  # set by EngineProcess.close
        self._send_lock = threading.Lock()  # close() may send while a call sends
        self._reaper = threading.Thread(target=self.proc.join, daemon=True,
                                        name="napari-unet-engine-reaper")
        self._reaper.start()

    @property
    def alive(self) -> bool:
        """True until the process has ended and been reaped."""
        return self._reaper.is_alive()

    def send(self, message: Any) -> None:
        """Send ``message`` (pickled) to the engine; raises OSError if the pipe is broken."""
        with self._send_lock:
            self.conn.send(message)

    def exitcode(self, timeout: float = 2.0) -> int | None:
        """The exit code, waiting up to ``timeout`` s for the process to end; None if it runs."""
        self._reaper.join(timeout)
        return None if self._reaper.is_alive() else self.proc.exitcode

    def end(self, timeout: float) -> int | None:
        """Wait ``timeout`` s for the process to exit, then terminate it, then kill it.

        Returns its exit code (None only if even SIGKILL did not end it in time).
        """
        for force in (None, self.proc.terminate, self.proc.kill):
            if force is not None:
                force()
            code = self.exitcode(timeout)
            if code is not None:
                return code
        return None


def _ended_unexpectedly(code: int | None) -> RuntimeError:
    """The error reported once after the engine died; ``code`` is its exit code."""
    if code is None or code >= 0:
        how = f"exit code {code}"
    elif code == -signal.SIGKILL:
        how = "killed by SIGKILL, often because the system ran out of memory"
    else:
        how = f"killed by signal {-code}"
    return RuntimeError(f"The napari-unet engine process ended unexpectedly ({how}); its "
                        "model is lost. Build or load a model to start again.")


def _engine_error(payload: tuple) -> BaseException:
    """The exception to raise for an ("error", payload) message from the engine."""
    name, is_value_error, message, tb = payload
    if is_value_error:
        return ValueError(message)
    if name == "MemoryError":
        return MemoryError(message)
    return RuntimeError(f"{name}: {message}\n(engine traceback)\n{tb}")


class EngineProcess:
    """A spawned process running `EngineState`; started on the first call."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._child: _Child | None = None
        self._stop = self._ctx.Event()
        self._lock = threading.Lock()  # one call at a time through the pipe

    @property
    def alive(self) -> bool:
        """True while the engine process runs."""
        return self._child is not None and self._child.alive

    @property
    def _proc(self) -> Any:
        """The current engine's ``multiprocessing.Process`` (or None), for tests and debugging."""
        return self._child.proc if self._child is not None else None

    def start(self) -> None:
        """Start a fresh engine process (the first call does this by itself)."""
        self._child = _Child(self._ctx, self._stop)

    def call(self, method: str, *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        """Run ``method`` in the engine; yields its progress, returns its result.

        If the engine died since the last call, raises RuntimeError once (its
        model is lost); the next call starts a fresh engine. If `close` ends the
        engine during the call, raises `EngineClosed`. Calls from several
        threads wait for each other.
        """
        with self._lock:
            return (yield from self._call(method, args, kwargs))

    def _call(self, method: str, args: tuple, kwargs: dict):
        child = self._child
        if child is not None and not child.alive:
            self._child = None
            child.conn.close()
            raise _ended_unexpectedly(child.exitcode())
        if child is None:
            self.start()
            child = self._child
        self._stop.clear()
        try:
            child.send((method, args, kwargs))
        except OSError:
            raise self._lost(child) from None
        while True:
            try:
                kind, payload = child.conn.recv()
            except (EOFError, OSError):
                raise self._lost(child) from None
            if child.closing.is_set():
                continue  # read on, so the engine can finish sending and exit by itself
            if kind == "progress":
                yield payload
            elif kind == "result":
                return payload
            else:
                raise _engine_error(payload)

    def _lost(self, child: _Child) -> RuntimeError:
        """Forget ``child``, whose pipe broke during a call; returns the error to raise."""
        child.conn.close()
        if self._child is child:
            self._child = None
        if child.closing.is_set():
            return EngineClosed("The napari-unet engine was closed during the call; its model "
                                "is lost.")
        return _ended_unexpectedly(child.exitcode())

    def run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`call` without progress: returns the result."""
        from .progress import drain

        return drain(self.call(method, *args, **kwargs))

    def request_stop(self) -> None:
        """Ask a running training to stop after its current batch."""
        self._stop.set()

    def close(self, timeout: float = 5.0) -> None:
        """End the engine process (its model is lost).

        A running training is asked to stop after its current batch; the engine
        then gets ``timeout`` seconds to finish and exit by itself before it is
        terminated. A call running in another thread raises `EngineClosed`.
        """
        child, self._child = self._child, None
        if child is None:
            return
        child.closing.set()
        self._stop.set()
        try:
            child.send(None)
        except OSError:  # already dead
            pass
        child.end(timeout)
        if self._lock.acquire(blocking=False):  # else the running call closes the pipe
            try:
                child.conn.close()
            finally:
                self._lock.release()
