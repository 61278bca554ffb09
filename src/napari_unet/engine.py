"""The model's own process, for graphical front ends.

Why a child process: napari draws with OpenGL, and Mesa's drivers put a second copy of
LLVM into the process; TensorFlow (which bundles its own LLVM for XLA) can crash when
both are used. So the widgets never import TensorFlow: they drive an `EngineProcess`,
a ``python -m napari_unet.engine`` child that holds the model, builds, trains, predicts,
loads and saves it, and streams progress back. The child is a fresh interpreter, so it
never re-imports the user's ``__main__``: scripts without a main guard, notebooks and
napari's console work. Side benefits: GPU memory is returned when the engine ends, and
an engine crash cannot take the viewer down. Scripts and the CLI call the core
directly and do not need this.

`EngineProcess.call(method, ...)` is a generator: it yields the progress events of the
call and returns its result. Errors cross the process boundary typed: ``ValueError``
(and `ModelFileError`) and ``MemoryError`` as themselves, anything else as
`EngineError` carrying the engine's traceback; a dead engine as `EngineDied` (the next
call starts a fresh one), a closed one as `EngineClosed`. None is a ``RuntimeError``,
which napari's generator workers would take for "worker deleted".
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import traceback
from multiprocessing.connection import Client, Listener
from pathlib import Path
from typing import Any, Generator

__all__ = ["EngineError", "EngineDied", "EngineClosed", "EngineCancelled", "EngineProcess",
           "EngineState"]


class EngineState:
    """What lives in the engine process: the current model and the operations on it."""

    def __init__(self, stop_event: Any):
        self.model = None
        self.stop_event = stop_event

    def summary(self) -> dict | None:
        if self.model is None:
            return None
        return {"config": self.model.config.to_dict(), "history": self.model.history,
                "info": self.model.info, **_decoding(self.model),
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

    def uncertainty(self, image, axes: str | None, passes: int, tile_size: int | None = None,
                    model_path: str | None = None):
        """Monte-Carlo dropout maps of ``image`` (`napari_unet.uncertainty`), yielding
        progress; returns ``(entropy, spread)``."""
        from .uncertainty import iter_uncertainty

        result = yield from iter_uncertainty(self._model_for(model_path), image, passes,
                                             axes=axes, tile_size=tile_size)
        return result.entropy, result.spread

    def uncertainty_block(self, block, axes: str, stats, origin, passes: int,
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

    def model_summary(self, model_path: str | None = None) -> dict:
        """Summary of the current model, or of the model file at ``model_path``."""
        model = self._model_for(model_path)
        return {"config": model.config.to_dict(), **_decoding(model),
                "normalization": model.normalization.to_dict()}

    def predict_block(self, block, axes: str, stats, model_path: str | None = None,
                      tile_size: int | None = None):
        """Probabilities of one block of a lazy array (see `napari_unet.lazy`)."""
        from .inference import iter_probabilities
        from .progress import drain

        return drain(iter_probabilities(self._model_for(model_path), block, axes=axes,
                                        stats=stats, tile_size=tile_size))

    def predict_folder(self, in_dir: str, out_dir: str, options, tile_size: int | None = None,
                       model_path: str | None = None):
        """Every image of ``in_dir`` into ``out_dir`` (`napari_unet.folders`), yielding a
        `FileResult` per file; returns them as dicts."""
        from dataclasses import asdict

        from .folders import iter_predict_folder

        results = yield from iter_predict_folder(self._model_for(model_path), in_dir, out_dir,
                                                 options, tile_size=tile_size)
        return [asdict(r) for r in results]

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


def _decoding(model: Any) -> dict:
    """How ``model`` turns probabilities into labels by default (its calibrated values)."""
    return {"target": model.target, "threshold": model.threshold,
            "seed_threshold": model.seed_threshold, "min_size": model.min_size,
            "class_names": list(model.class_names)}


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
    """In the engine: a job was cancelled (`EngineProcess.request_stop`)."""


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
    """Entry point of ``python -m napari_unet.engine``: read the key from standard input,
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


class EngineError(Exception):
    """A failure inside the engine process; ``remote_traceback`` is the engine's traceback."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


class EngineCancelled(Exception):
    """A job other than training was cancelled (`EngineProcess.request_stop`) after its
    current step; it has no result, and the engine and its model are as before."""


class EngineDied(EngineError):
    """The engine process ended unexpectedly; its model is lost. The next call starts anew."""


class EngineClosed(EngineError):
    """`EngineProcess.close` ended the engine while a call was running; its model is lost."""


class _Child:
    """One engine process, its call and control connections, and a thread that reaps it.

    The reaper thread is the only one that waits for the process, so a process
    that dies while idle (e.g. killed for lack of memory) does not stay a zombie,
    and its exit code is known once ``alive`` is False.
    """

    def __init__(self) -> None:
        key = secrets.token_bytes(32)
        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.proc = subprocess.Popen([sys.executable, "-m", "napari_unet.engine"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._reaper = threading.Thread(target=self.proc.wait, daemon=True,
                                        name="napari-unet-engine-reaper")
        self._reaper.start()
        self.proc.stdin.write(key.hex() + "\n")
        self.proc.stdin.close()
        address = self.proc.stdout.readline().strip()
        self.proc.stdout.close()
        if not address:
            raise _ended_unexpectedly(self.exitcode(), "while starting")
        self.conn = Client(address, authkey=key)
        self.control = Client(address, authkey=key)
        self.closing = threading.Event()  # set by EngineProcess.close
        self._send_lock = threading.Lock()  # close() may send while a call sends

    @property
    def alive(self) -> bool:
        """True until the process has ended and been reaped."""
        return self._reaper.is_alive()

    def send(self, message: Any) -> None:
        """Send ``message`` (pickled) to the engine; raises OSError if the pipe is broken."""
        with self._send_lock:
            self.conn.send(message)

    def stop(self) -> None:
        """Ask the running call to stop after its current step (best effort)."""
        try:
            self.control.send("stop")
        except OSError:
            pass

    def exitcode(self, timeout: float = 2.0) -> int | None:
        """The exit code, waiting up to ``timeout`` s for the process to end; None if it runs."""
        self._reaper.join(timeout)
        return None if self._reaper.is_alive() else self.proc.returncode

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

    def close_connections(self) -> None:
        for conn in (getattr(self, "conn", None), getattr(self, "control", None)):
            if conn is not None:
                conn.close()


def _ended_unexpectedly(code: int | None, when: str = "") -> EngineDied:
    """The error reported once after the engine died; ``code`` is its exit code."""
    if code is None or code >= 0:
        how = f"exit code {code}"
    elif code == -signal.SIGKILL:
        how = "killed by SIGKILL, often because the system ran out of memory"
    else:
        how = f"killed by signal {-code}"
    return EngineDied(f"The napari-unet engine process ended unexpectedly{' ' + when if when else ''} "
                      f"({how}); its model is lost. Build or load a model to start again.")


def _engine_error(payload: tuple) -> BaseException:
    """The exception to raise for an ("error", payload) message from the engine."""
    from .model_files import ModelFileError

    name, kind, message, tb = payload
    known = {"ModelFileError": ModelFileError, "ValueError": ValueError,
             "MemoryError": MemoryError}
    if kind in known:
        return known[kind](message)
    return EngineError(f"{name}: {message}", tb)


class EngineProcess:
    """A ``python -m napari_unet.engine`` process running `EngineState`; started on the first call."""

    def __init__(self) -> None:
        self._child: _Child | None = None
        self._lock = threading.Lock()  # one call at a time through the connection

    @property
    def alive(self) -> bool:
        """True while the engine process runs."""
        return self._child is not None and self._child.alive

    @property
    def _proc(self) -> Any:
        """The current engine's ``subprocess.Popen`` (or None), for tests and debugging."""
        return self._child.proc if self._child is not None else None

    def start(self) -> None:
        """Start a fresh engine process (the first call does this by itself)."""
        self._child = _Child()

    def call(self, method: str, *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        """Run ``method`` in the engine; yields its progress, returns its result.

        If the engine died since the last call, raises `EngineDied` once (its
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
            child.close_connections()
            raise _ended_unexpectedly(child.exitcode())
        if child is None:
            self.start()
            child = self._child
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
            elif kind == "cancelled":
                raise EngineCancelled(f"{payload} was cancelled")
            else:
                raise _engine_error(payload)

    def _lost(self, child: _Child) -> EngineError:
        """Forget ``child``, whose connection broke during a call; returns the error to raise."""
        child.close_connections()
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
        """Ask a running training to stop after its current batch (keeping its best
        weights), or cancel any other running job after its current step (its call then
        raises `EngineCancelled`)."""
        if self._child is not None:
            self._child.stop()

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
        child.stop()
        try:
            child.send(None)
        except OSError:  # already dead
            pass
        child.end(timeout)
        if self._lock.acquire(blocking=False):  # else the running call closes the connections
            try:
                child.close_connections()
            finally:
                self._lock.release()


if __name__ == "__main__":
    main()
