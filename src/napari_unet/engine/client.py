"""The model's own process, for graphical front ends: `EngineClient`.

Why a child process: napari draws with OpenGL, and Mesa's drivers put a second copy of
LLVM into the process; TensorFlow (which bundles its own LLVM for XLA) can crash when
both are used. So the widgets never import TensorFlow: they drive an `EngineClient`,
whose ``python -m napari_unet.engine.server`` child holds the model, builds, trains,
predicts, loads and saves it, and streams progress back. The child is a fresh
interpreter, so it never re-imports the user's ``__main__``: scripts without a main
guard, notebooks and napari's console work. Side benefits: GPU memory is returned when
the engine ends, and an engine crash cannot take the viewer down. Scripts and the CLI
call the core directly and do not need this.

`EngineClient`'s methods are those of `napari_unet.engine.protocol.Engine` (documented
there), and `stop` and `close`. Long jobs (``train``, ``segment`` ...) are generators:
they yield progress events (`TrainProgress`, `PredictProgress` ...) and return their
result; the others return it. Models are described by `ModelSummary`.
Errors cross the process boundary typed: ``ValueError`` (and `ModelFileError`) and
``MemoryError`` as themselves, anything else as `EngineError` carrying the engine's
traceback; a dead engine as `EngineDied` (the next call starts a fresh one), a closed
one as `EngineClosed`, a cancelled job as `EngineCancelled`, an engine that was
suspended (SIGSTOP, Ctrl-Z) and cannot answer as `EngineStalled` (it is ended). None is a
``RuntimeError``, which napari's generator workers would take for "worker deleted".
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
from multiprocessing.connection import Client
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generator

if TYPE_CHECKING:  # pragma: no cover
    from ..labels.options import LabelOptions
    from ..model.config import UNetConfig
    from ..model.normalization import PercentileNormalization
    from ..model.summary import ModelSummary
    from ..prediction.folders import FileResult
    from ..training.request import TrainRequest

__all__ = ["EngineClient", "EngineError", "EngineDied", "EngineClosed", "EngineCancelled",
           "EngineStalled"]

STALL_CHECK_S = 2.0  # a call that hears nothing this long asks whether the engine can answer
_STALLED = ("stopped", "tracing-stop")


class EngineError(Exception):
    """A failure inside the engine process; ``remote_traceback`` is the engine's traceback."""

    def __init__(self, message: str, remote_traceback: str = "") -> None:
        super().__init__(message)
        self.remote_traceback = remote_traceback


class EngineCancelled(Exception):
    """A job other than training was cancelled (`EngineClient.stop`) after its
    current step; it has no result, and the engine and its model are as before."""


class EngineDied(EngineError):
    """The engine process ended unexpectedly; its model is lost. The next call starts anew."""


class EngineStalled(EngineError):
    """The engine process stopped answering (it was suspended); it was ended, and its model
    is lost. The next call starts a fresh engine."""


class EngineClosed(EngineError):
    """`EngineClient.close` ended the engine while a call was running; its model is lost."""


class _Child:
    """One engine process, its call and control connections, and a thread that reaps it.

    The reaper thread is the only one that waits for the process, so a process
    that dies while idle (e.g. killed for lack of memory) does not stay a zombie,
    and its exit code is known once ``alive`` is False.
    """

    def __init__(self) -> None:
        key = secrets.token_bytes(32)
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.proc = subprocess.Popen([sys.executable, "-m", "napari_unet.engine.server"], env=env,
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
        self.closing = threading.Event()  # set by EngineClient.close
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

    def state(self) -> str:
        """The process's state as psutil names it ("running", "sleeping", "stopped" ...)."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).status()
        except psutil.Error:
            return "dead"

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
    from ..model.files import ModelFileError

    name, kind, message, tb = payload
    known = {"ModelFileError": ModelFileError, "ValueError": ValueError,
             "MemoryError": MemoryError}
    if kind in known:
        return known[kind](message)
    return EngineError(f"{name}: {message}", tb)


class _Connection:
    """The engine process and one call at a time through it; started on the first call."""

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

    def _request(self, method: str, *args: Any, **kwargs: Any) -> Generator[Any, None, Any]:
        """Run `EngineState` ``method`` in the engine; yields its progress, returns its result.

        If the engine died since the last call, raises `EngineDied` once (its
        model is lost); the next call starts a fresh engine. If `close` ends the
        engine during the call, raises `EngineClosed`. Calls from several
        threads wait for each other.
        """
        with self._lock:
            return (yield from self._exchange(method, args, kwargs))

    def _exchange(self, method: str, args: tuple, kwargs: dict):
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
                if not child.conn.poll(STALL_CHECK_S):  # quiet: is the engine still working?
                    self._check_not_stalled(child)
                    continue
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

    def _check_not_stalled(self, child: _Child) -> None:
        """Raise `EngineStalled` (and end the child) when the engine process cannot answer:
        it is stopped (SIGSTOP, Ctrl-Z). A process that runs, sleeps or waits for the disk
        is working and is waited for (a dead one breaks the connection instead)."""
        state = child.state()
        if state not in _STALLED:
            return
        child.close_connections()
        child.proc.kill()
        if self._child is child:
            self._child = None
        raise EngineStalled(f"The napari-unet engine process (pid {child.proc.pid}) is {state} "
                            "and cannot answer (it was suspended, for example with SIGSTOP or "
                            "Ctrl-Z); it was ended and its model is lost. Build or load a "
                            "model to start again.")

    def _lost(self, child: _Child) -> EngineError:
        """Forget ``child``, whose connection broke during a call; returns the error to raise."""
        child.close_connections()
        if self._child is child:
            self._child = None
        if child.closing.is_set():
            return EngineClosed("The napari-unet engine was closed during the call; its model "
                                "is lost.")
        return _ended_unexpectedly(child.exitcode())

    def stop(self) -> None:
        """Ask a running training to stop after the batches in progress (keeping its best
        weights), or cancel any other running job after its current step (its call then
        raises `EngineCancelled`)."""
        if self._child is not None:
            self._child.stop()

    def close(self, timeout: float = 5.0) -> None:
        """End the engine process (its model is lost).

        A running training is asked to stop after the batches in progress; the engine
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


class EngineClient(_Connection):
    """A napari-unet engine process and its model (see the module docstring): an
    `napari_unet.engine.protocol.Engine` whose every method runs in the child.

    The process starts on the first call. Calls from several threads wait for each
    other; `stop` and `close` may be called from any thread while a call runs.
    """

    def _result(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from ..common.progress import drain

        return drain(self._request(method, *args, **kwargs))

    def device(self) -> str:
        return self._result("device")

    def summary(self) -> ModelSummary | None:
        return self._result("summary")

    def model_summary(self, model_path: str | None = None) -> ModelSummary:
        return self._result("model_summary", model_path)

    def build(self, config: UNetConfig,
              normalization: PercentileNormalization | None = None) -> ModelSummary:
        return self._result("build", config, normalization)

    def load(self, path: str) -> ModelSummary:
        return self._result("load", str(path))

    def save(self, path: str) -> str:
        return self._result("save", str(path))

    def export_bioimageio(self, path: str, name: str | None = None) -> str:
        return self._result("export_bioimageio", str(path), name)

    def train(self, request: TrainRequest) -> Generator[Any, None, ModelSummary]:
        return (yield from self._request("train", request))

    def segment(self, image: Any, axes: str | None, options: LabelOptions, *,
                tile_size: int | None = None, probabilities: bool = False,
                model_path: str | None = None) -> Generator[Any, None, tuple[Any, Any, str]]:
        return (yield from self._request("segment", image, axes, options, tile_size=tile_size,
                                         probabilities=probabilities, model_path=model_path))

    def uncertainty(self, image: Any, axes: str | None, passes: int, *,
                    tile_size: int | None = None, model_path: str | None = None
                    ) -> Generator[Any, None, tuple[Any, Any]]:
        return (yield from self._request("uncertainty", image, axes, passes,
                                         tile_size=tile_size, model_path=model_path))

    def predict_folder(self, in_dir: str, out_dir: str, options: LabelOptions, *,
                       tile_size: int | None = None, model_path: str | None = None
                       ) -> Generator[FileResult, None, list[FileResult]]:
        return (yield from self._request("predict_folder", in_dir, out_dir, options,
                                         tile_size=tile_size, model_path=model_path))

    def predict_block(self, block: Any, axes: str, stats: Any, *, model_path: str | None = None,
                      tile_size: int | None = None) -> Any:
        return self._result("predict_block", block, axes, stats, model_path=model_path,
                            tile_size=tile_size)

    def uncertainty_block(self, block: Any, axes: str, stats: Any, origin: Any, passes: int, *,
                          model_path: str | None = None, tile_size: int | None = None) -> Any:
        return self._result("uncertainty_block", block, axes, stats, origin, passes,
                            model_path=model_path, tile_size=tile_size)
