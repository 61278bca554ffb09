"""The engine process used by the widgets: model kept in a child process, progress streamed."""

import os
import signal
import threading
import time

import numpy as np
import psutil
import pytest

from napari_unet.common.progress import drain
from napari_unet.engine.client import (
    EngineCancelled,
    EngineClient,
    EngineClosed,
    EngineDied,
    EngineError,
)
from napari_unet.engine.server import EngineState
from napari_unet.labels.options import LabelOptions
from napari_unet.model.config import UNetConfig
from napari_unet.model.summary import ModelSummary
from napari_unet.samples.nuclei import make_nuclei
from napari_unet.training.request import TrainRequest
from napari_unet.training.settings import TrainSettings

TINY = UNetConfig(depth=2, start_neurons=4)
TINIEST = UNetConfig(depth=1, start_neurons=2)


@pytest.fixture(scope="module")
def engine():
    eng = EngineClient()
    yield eng
    eng.close()


def test_build_train_predict_save_load(engine, tmp_path):
    summary = engine.build(TINY)
    assert isinstance(summary, ModelSummary)
    assert summary.config == TINY and summary.history == {} and not summary.trained
    image, labels = make_nuclei((64, 64), seed=2)
    gen = engine.train(TrainRequest([image], [labels], settings=TrainSettings(
        patch_size=32, batch_size=2, epochs=2, steps_per_epoch=2)))
    events = []
    summary = drain(gen, events.append)
    assert [e.phase for e in events].count("epoch") == 2
    assert summary.epochs == 2 and summary.info["epochs_run"] == 2
    assert summary.target == "boundary" and 0 < summary.decoding.threshold < 1
    labels_out, probs, axes = drain(engine.segment(image, None, LabelOptions(), probabilities=True))
    assert labels_out.shape == image.shape and probs.dtype == np.float32 and axes == "YX"
    path = engine.save(tmp_path / "m.keras")
    loaded = engine.load(path)
    assert loaded.history == summary.history and loaded.decoding == summary.decoding


def test_client_and_server_follow_the_engine_protocol():
    """The viewer's `EngineClient` and the engine's `EngineState` have exactly the methods
    of `Engine`, each with its parameters (names, kinds, defaults, in order)."""
    import inspect

    from napari_unet.engine.protocol import Engine

    def operations(cls):
        return {name for name, _ in inspect.getmembers(cls, inspect.isfunction)
                if not name.startswith("_")}

    protocol = operations(Engine)
    assert operations(EngineState) == protocol
    assert operations(EngineClient) - {"start", "stop", "close"} == protocol
    for name in protocol:
        wanted = [(p.name, p.kind, p.default)
                  for p in inspect.signature(getattr(Engine, name)).parameters.values()]
        for cls in (EngineClient, EngineState):
            found = [(p.name, p.kind, p.default)
                     for p in inspect.signature(getattr(cls, name)).parameters.values()]
            assert found == wanted, f"{cls.__name__}.{name}"
    assert isinstance(EngineClient(), Engine)


def test_cancel_ends_a_prediction_after_its_step_and_training_goes_on(engine):
    engine.build(TINY)
    stack = np.stack([make_nuclei((256, 256), seed=s)[0] for s in range(4)])
    gen = engine.segment(stack, "ZYX", LabelOptions(), tile_size=96)  # 256 windows, 8 batches
    first = next(gen)  # one step done: cancel the rest
    engine.stop()
    with pytest.raises(EngineCancelled, match="segment was cancelled"):
        drain(gen)
    assert first.done < first.total
    # the engine and its model are as before; a later call is not cancelled by the old request
    labels, _, _ = drain(engine.segment(stack[:1], "ZYX", LabelOptions()))
    assert labels.shape == (1, 256, 256)
    image, truth = make_nuclei((64, 64), seed=2)
    events = []
    gen = engine.train(TrainRequest([image], [truth], settings=TrainSettings(
        patch_size=32, batch_size=2, epochs=50, steps_per_epoch=2)))
    for event in gen:  # Stop (the same request) ends training but keeps its model
        events.append(event)
        if len(events) == 2:
            engine.stop()
    assert engine.model_summary().config.depth == 2


def test_errors_come_back_as_value_errors_and_the_engine_survives(engine):
    with pytest.raises(ValueError, match="labels are empty"):
        drain(engine.train(TrainRequest([np.zeros((32, 32))], [np.zeros((32, 32), int)])))
    with pytest.raises(ValueError, match="does not exist"):
        engine.load("/nonexistent/model.keras")
    assert engine.alive
    assert engine.device().startswith(("CPU", "GPU"))


def test_a_dead_engine_is_reported_and_restarted():
    eng = EngineClient()
    eng.build(TINIEST)
    eng._proc.kill()
    eng._proc.wait()
    with pytest.raises(EngineDied, match="ended unexpectedly"):
        eng.device()
    assert eng.build(TINIEST).config.depth == 1
    eng.close()
    assert not eng.alive


def _reaped(pid: int) -> bool:
    """True once ``pid`` is no longer a process (or zombie) that is our child."""
    try:
        return psutil.Process(pid).ppid() != os.getpid()
    except psutil.NoSuchProcess:
        return True


def test_an_engine_killed_while_idle_is_reaped_and_reported_once():
    eng = EngineClient()
    try:
        assert eng.summary() is None  # starts the engine without loading TensorFlow
        pid = eng._proc.pid
        os.kill(pid, signal.SIGKILL)
        for _ in range(100):  # up to about 10 s, without asking the engine anything
            if _reaped(pid) and not eng.alive:  # the reaper thread returns just after waitpid
                break
            time.sleep(0.1)
        assert _reaped(pid), f"the killed engine is still a {psutil.Process(pid).status()} process"
        assert not eng.alive
        with pytest.raises(EngineDied, match="ended unexpectedly.*SIGKILL"):
            eng.summary()
        assert eng.summary() is None and eng.alive
    finally:
        eng.close()


def test_close_during_training_stops_it_and_the_engine_exits_by_itself():
    eng = EngineClient()
    image, labels = make_nuclei((64, 64), seed=2)
    first_event, outcome = threading.Event(), {}

    def train():
        settings = TrainSettings(patch_size=32, batch_size=2, epochs=1000, steps_per_epoch=5)
        try:
            for _ in eng.train(TrainRequest([image], [labels], settings=settings,
                                            new_config=UNetConfig(depth=1, start_neurons=4))):
                first_event.set()
            outcome["returned"] = True
        except Exception as err:  # noqa: BLE001 - the test inspects it
            outcome["error"] = err
        first_event.set()

    thread = threading.Thread(target=train)
    thread.start()
    assert first_event.wait(600) and not outcome, outcome
    proc = eng._proc
    eng.close(timeout=60)  # generous: on a busy machine the engine still stops by itself
    thread.join(60)
    assert not thread.is_alive() and not eng.alive
    assert proc.returncode == 0, "the engine was terminated instead of ending by itself"
    assert isinstance(outcome.get("error"), EngineClosed), outcome
    assert "closed" in str(outcome["error"])


def test_errors_cross_the_process_boundary_typed(engine, tmp_path):
    from napari_unet.model.files import ModelFileError

    engine.build(TINIEST)
    with pytest.raises(EngineError) as info:  # a TypeError in the engine: not a RuntimeError
        engine._result("build", TINIEST, None, "an argument too many")
    assert not isinstance(info.value, RuntimeError) and "TypeError" in str(info.value)
    assert "Traceback" in info.value.remote_traceback
    with pytest.raises(ValueError, match="Cannot write the model file"):
        engine.save("/proc/napari-unet-test.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.keras"):
        engine.load(bad)
    assert engine.alive


SCRIPT_WITHOUT_MAIN_GUARD = """
from napari_unet.model.config import UNetConfig
from napari_unet.engine.client import EngineClient
from napari_unet.labels.options import LabelOptions
from napari_unet.common.progress import drain
from napari_unet.samples.nuclei import make_nuclei
from napari_unet.training.request import TrainRequest
from napari_unet.training.settings import TrainSettings

image, labels = make_nuclei((64, 64), seed=1)
engine = EngineClient()
engine.build(UNetConfig(depth=1, start_neurons=2))
drain(engine.train(TrainRequest([image], [labels], settings=TrainSettings(
    patch_size=32, batch_size=2, epochs=1, steps_per_epoch=1))))
out, _, _ = drain(engine.segment(image, None, LabelOptions()))
engine.close()
print("done", out.shape)
"""


def test_a_script_without_a_main_guard_builds_trains_and_runs(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "no_guard.py"
    script.write_text(SCRIPT_WITHOUT_MAIN_GUARD)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines() == ["done (64, 64)"]


def test_a_suspended_engine_is_reported_and_the_next_call_starts_a_fresh_one():
    """An engine stopped with SIGSTOP cannot answer: the call waiting for it says so
    (`EngineStalled`) instead of blocking for ever, and the next call starts anew."""
    import os
    import signal

    from napari_unet.engine.client import EngineStalled

    eng = EngineClient()
    try:
        eng.device()
        os.kill(eng._proc.pid, signal.SIGSTOP)
        with pytest.raises(EngineStalled, match="is stopped and cannot answer"):
            eng.device()
        assert eng.device().startswith(("CPU", "GPU")) and eng.alive
    finally:
        eng.close()
