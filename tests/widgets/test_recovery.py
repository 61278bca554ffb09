"""The plugin recovers from the unhappy paths: failures of any kind, a killed engine, a
closed dock. Each test ends with the buttons enabled and the session idle."""

import os
import signal

from .conftest import WORKER_TIMEOUT_MS, build_tiny, set_fast_training, wait_for_worker


def _idle(w):
    return (not w["build"].session.busy and w["build"].build_button.enabled
            and w["train"].train_button.enabled and w["run"].run_button.enabled)


def test_a_failed_save_is_reported_and_the_plugin_stays_usable(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    w["build"].save_path.value = "/proc/napari-unet-test.keras"
    w["build"].save()
    qtbot.waitUntil(lambda: w["build"].worker is None, timeout=WORKER_TIMEOUT_MS)
    assert "Save" in w["build"].last_error
    assert _idle(w)
    build_tiny(qtbot, w["build"])  # the next action works
    assert w["build"].last_error == ""


def _start_long_training(w, qtbot, epochs):
    """Build a tiny model and train it for ``epochs``; returns once the first epoch ended."""
    build_tiny(qtbot, w["build"])
    set_fast_training(w["train"], epochs=epochs, steps=10)
    w["train"].start()
    qtbot.waitUntil(lambda: len(w["train"].plot.history.get("loss", [])) >= 1,
                    timeout=WORKER_TIMEOUT_MS)


def test_a_killed_engine_is_reported_and_restarted(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    _start_long_training(w, qtbot, epochs=200)
    os.kill(w["train"].session.engine._proc.pid, signal.SIGKILL)
    wait_for_worker(qtbot, w["train"])
    assert "ended unexpectedly" in w["train"].last_error
    assert "SIGKILL" in w["train"].last_error
    assert _idle(w) and not w["train"].session.has_model
    assert w["train"].plot.history == {}  # the dead engine's curves went with its model
    build_tiny(qtbot, w["build"])  # a fresh engine
    assert w["build"].session.has_model and w["build"].session.engine.alive


def test_closing_the_train_dock_stops_its_training(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    _start_long_training(w, qtbot, epochs=500)
    viewer.window.remove_dock_widget(w["train"].native)
    epochs_at_close = len(w["train"].plot.history["loss"])
    qtbot.waitUntil(lambda: not w["build"].session.busy, timeout=WORKER_TIMEOUT_MS)
    info = w["build"].session.summary.info
    assert info["stopped_early"] is True
    # it stopped after the batch in progress: a few epochs whose progress was still in
    # flight when the dock closed, not the 500 asked for
    assert epochs_at_close <= info["epochs_run"] < epochs_at_close + 20
    assert w["build"].build_button.enabled and w["run"].run_button.enabled


def test_a_loaded_model_shows_its_history_and_the_run_names_its_model(viewer_with_widgets,
                                                                      qtbot, tmp_path):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    set_fast_training(w["train"], epochs=2, steps=2)
    w["train"].start()
    wait_for_worker(qtbot, w["train"])
    path = tmp_path / "m.keras"
    w["build"].save_path.value = str(path)
    w["build"].save()
    qtbot.waitUntil(lambda: w["build"].worker is None and path.exists(), timeout=WORKER_TIMEOUT_MS)
    build_tiny(qtbot, w["build"])  # a new, untrained model: nothing to plot
    assert w["train"].plot.history == {}
    w["build"].load_path.value = str(path)
    w["build"].load()
    qtbot.waitUntil(lambda: w["build"].worker is None, timeout=WORKER_TIMEOUT_MS)
    assert len(w["train"].plot.history["loss"]) == 2
    run = w["run"]
    run.source.value = "model file"
    run.model_file.value = str(path)
    run.image.value = viewer.layers["nuclei"]
    run.start()
    wait_for_worker(qtbot, run)
    assert "m.keras" in run.status.value
