"""The engine process used by the widgets: model kept in a child process, progress streamed."""

import numpy as np
import pytest

from napari_unet.progress import drain
from napari_unet.engine import EngineProcess
from napari_unet.sample_data import make_nuclei


@pytest.fixture(scope="module")
def engine():
    eng = EngineProcess()
    yield eng
    eng.close()


def test_build_train_predict_save_load(engine, tmp_path):
    summary = engine.run("build", {"depth": 2, "start_neurons": 4})
    assert summary["config"]["depth"] == 2 and summary["history"] == {}
    image, labels = make_nuclei((64, 64), seed=2)
    gen = engine.call("train", [image], [labels], None,
                      {"patch_size": 32, "batch_size": 2, "epochs": 2, "steps_per_epoch": 2})
    events = []
    summary = drain(gen, events.append)
    assert [e.phase for e in events].count("epoch") == 2
    assert len(summary["history"]["loss"]) == 2
    labels_out, probs, axes = engine.run("predict", image, None, {"probabilities": True})
    assert labels_out.shape == image.shape and probs.dtype == np.float32 and axes == "YX"
    path = engine.run("save", str(tmp_path / "m.keras"))
    assert engine.run("load", path)["history"] == summary["history"]


def test_errors_come_back_as_value_errors_and_the_engine_survives(engine):
    with pytest.raises(ValueError, match="labels are empty"):
        engine.run("train", [np.zeros((32, 32))], [np.zeros((32, 32), int)], None, {})
    with pytest.raises(ValueError, match="does not exist"):
        engine.run("load", "/nonexistent/model.keras")
    assert engine.alive
    assert engine.run("device").startswith(("CPU", "GPU"))


def test_a_dead_engine_is_reported_and_restarted():
    eng = EngineProcess()
    eng.run("build", {"depth": 1, "start_neurons": 2})
    eng._proc.kill()
    eng._proc.join()
    with pytest.raises(RuntimeError, match="ended unexpectedly"):
        eng.run("device")
    assert eng.run("build", {"depth": 1, "start_neurons": 2})["config"]["depth"] == 1
    eng.close()
    assert not eng.alive
