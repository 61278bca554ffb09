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


def _lazy_run(viewer, w, qtbot, name, engine_calls):
    """Run the tiny model lazily on a new 512² dask layer ``name`` (32 px chunks), each
    engine call going through ``engine_calls``; returns once its fill computed 2 chunks."""
    import dask.array as da

    from napari_unet.samples.nuclei import make_nuclei

    viewer.add_image(da.from_array(make_nuclei((512, 512), seed=3)[0], chunks=32), name=name)
    viewer.reset_view()
    run = w["run"]
    run.reset_choices()
    run.output.value = "semantic mask"
    run.image.value = viewer.layers[name]
    run.start()
    wait_for_worker(qtbot, run)
    layer = viewer.layers[f"{name} U-Net"]
    qtbot.waitUntil(lambda: run.fill.running and layer.data.chunks_done >= 2,
                    timeout=WORKER_TIMEOUT_MS)
    return layer


def test_a_lazy_result_deleted_or_left_half_done_by_a_closed_dock(viewer_with_widgets, qtbot,
                                                                  monkeypatch):
    """Deleting a filling lazy result stops its fill, and a block that fails meanwhile is
    not reported (its result is gone); closing the dock marks a lazy result not computed
    whole as incomplete, by its name and a warning, so empty parts are not taken for
    background."""
    import time

    from napari.utils import notifications

    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    engine, run = w["run"].session.engine, w["run"]
    real_predict_block, deleted = engine.predict_block, []

    def slow_predict_block(*args, **kwargs):
        time.sleep(0.1)
        if deleted:
            raise IndexError("a block of a deleted result failed")
        return real_predict_block(*args, **kwargs)

    monkeypatch.setattr(engine, "predict_block", slow_predict_block)
    layer = _lazy_run(viewer, w, qtbot, "a", slow_predict_block)
    deleted.append(True)
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: not run.fill.running, timeout=WORKER_TIMEOUT_MS)
    assert run.last_error == "" and "deleted, so nothing more is computed" in run.status.value
    assert _idle(w)

    deleted.clear()
    warnings = []
    monkeypatch.setattr(notifications, "show_warning", warnings.append)
    layer = _lazy_run(viewer, w, qtbot, "b", slow_predict_block)
    viewer.window.remove_dock_widget(w["run"].native)
    qtbot.waitUntil(lambda: not run.fill.running, timeout=WORKER_TIMEOUT_MS)
    total = int(layer.data.lazy.numblocks[0] * layer.data.lazy.numblocks[1])
    assert layer.name == "b U-Net (incomplete)" and layer.data.chunks_done < total
    assert len(warnings) == 1 and f"of its {total} chunks" in warnings[0]
    assert "press Run" in warnings[0]
    assert not w["build"].session.busy and w["build"].build_button.enabled
