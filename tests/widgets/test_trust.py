"""What a biologist meets in the GUI (plugin issue #22): a useless model is never handed
back without a word, progress is honest, earlier results and hand edits are not lost, and
the results say what made them."""

import numpy as np
from napari.utils.notifications import notification_manager

from napari_unet.labels.metrics import evaluate

from .conftest import build_and_train_tiny, WORKER_TIMEOUT_MS, build_tiny, set_fast_training, wait_for_worker


def test_default_training_with_a_time_limit_is_usable_or_says_it_is_not(make_napari_viewer,
                                                                          qtbot):
    """The classic U-Net with every Train default and a half-minute limit on the sample
    (the issue's case used 2 minutes; benchmarks/bench_default_training.py runs that):
    the bar stays below 100 % while training runs and fills at the end, the limit counts
    training only, and the labels either match the truth (AP@0.5 > 0.5) or a warning says
    why they do not, in the status and a napari notification."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "nuclei")
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    build, train, run = dock.widgets
    build.build()
    qtbot.waitUntil(lambda: build.session.has_model and not build.session.busy,
                    timeout=WORKER_TIMEOUT_MS)
    train.reset_choices()
    train.image.value = viewer.layers["nuclei"]
    train.labels.value = viewer.layers["nuclei ground truth"]
    train.time_limit.value = 0.5
    seen = []
    train.progress.changed.connect(lambda v: seen.append((v, train.progress.max,
                                                          train.worker is not None)))
    notes = len(notification_manager.records)
    train.start()
    wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    during = [(v, m) for v, m, running in seen if running]
    assert during and all(v < m for v, m in during[:-1]), "100 % before training ended"
    assert train.progress.value == train.progress.max
    summary = train.session.summary
    assert summary.info["time_limited"] and "stopped at the time limit" in train.status.value
    assert summary.info["train_seconds"] <= 45  # the limit counted training, not start-up
    run.reset_choices()
    run.image.value = viewer.layers["nuclei"]
    run.start()
    wait_for_worker(qtbot, run)
    ap = evaluate(viewer.layers["nuclei U-Net"].data,
                  viewer.layers["nuclei ground truth"].data)["ap@0.5"]
    if ap <= 0.5:
        assert summary.warning, f"AP@0.5 {ap:.2f} and no warning"
        assert summary.warning in train.status.value
        assert any(summary.warning in str(n.message)
                   for n in notification_manager.records[notes:])


def test_run_keeps_edits_clears_old_scores_and_records_what_made_it(viewer_with_widgets,
                                                                    qtbot):
    viewer, w = viewer_with_widgets
    build_and_train_tiny(qtbot, w)
    run = w["run"]
    run.reset_choices()
    run.image.value = viewer.layers["nuclei"]
    run.start()
    wait_for_worker(qtbot, run)
    layer = viewer.layers["nuclei U-Net"]
    record = layer.metadata["napari_unet"]
    assert record["axes"] == "YX" and record["image"] == "nuclei", record
    assert "the viewer's model" in record["model"] and record["napari_unet"]
    assert record["options"]["instances"] is True
    run.truth.value = viewer.layers["truth"]
    run.start_evaluate()
    qtbot.waitUntil(lambda: "AP@0.5" in run.scores.value, timeout=WORKER_TIMEOUT_MS)
    layer.paint((5, 5), 7)  # a hand correction (data coordinates)
    run.start()
    wait_for_worker(qtbot, run)
    assert run.scores.value == "", "the scores were of the labels the new Run replaced"
    assert viewer.layers["nuclei U-Net"] is layer and layer.data[5, 5] == 7
    assert "nuclei U-Net (2)" in viewer.layers and "hand edits" in run.status.value
    run.start()  # an unedited result is updated in place, not copied again
    wait_for_worker(qtbot, run)
    assert "nuclei U-Net (3)" not in viewer.layers


def test_the_live_preview_is_not_offered_as_labels(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    train = w["train"]
    set_fast_training(train, epochs=2, steps=5)
    train.preview_every.value = 1
    train.start()
    wait_for_worker(qtbot, train)
    assert "nuclei preview" in viewer.layers and not viewer.layers["nuclei preview"].visible
    for widget in (train, w["run"]):
        widget.reset_choices()
    assert "nuclei preview" not in [n for n, _ in train._labels_layers()]
    assert viewer.layers["nuclei preview"] not in w["run"].truth.choices


def test_build_sets_the_normalisation_percentiles(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    build = w["build"]
    build.norm_low.value, build.norm_high.value = 2.0, 99.0
    build_tiny(qtbot, build)
    normalization = build.session.summary.normalization
    assert (normalization.low, normalization.high) == (2.0, 99.0)
    build.norm_low.value, build.norm_high.value = 50.0, 50.0  # low not below high: refused
    build.build()
    assert "percentiles" in build.last_error and "low" in build.last_error
    assert build.session.summary.normalization.high == 99.0  # the model is unchanged


def test_errors_name_the_controls_of_the_gui(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    viewer.add_image(np.random.default_rng(0).random((2, 64, 64)).astype(np.float32),
                     name="two channels")
    run = w["run"]
    run.reset_choices()
    run.image.value = viewer.layers["two channels"]
    run.axes.value = "CYX"
    run.start()
    wait_for_worker(qtbot, run)
    assert "2 input channels" in run.last_error and "axes" in run.last_error, run.last_error
