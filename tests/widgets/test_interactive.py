"""The interactive loop in a real napari viewer: a scribble layer, live previews while
training, continue training, training on folders, and the uncertainty map."""

import numpy as np

from napari_unet.io.images import write_image
from napari_unet.samples.nuclei import make_nuclei
from napari_unet.testing.scribbles import simulate_scribbles

from .conftest import build_and_train_tiny, Ticks as _Ticks
from .conftest import build_tiny, set_fast_training, wait_for_worker


def _paint_scribbles(train, viewer, coverage=0.02, seed=0):
    train.image.value = viewer.layers["nuclei"]
    train.class_names.value = "nucleus"
    train.make_scribble_layer()
    layer = viewer.layers["nuclei scribbles"]
    layer.data = simulate_scribbles(viewer.layers["truth"].data, coverage, seed=seed)
    return layer


def test_scribble_layer_live_preview_and_continue_training(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    train = w["train"]
    layer = _paint_scribbles(train, viewer)
    # the scribble layer sits on the image, ready to paint, and the widget says what is what
    assert layer.data.shape == (128, 128) and layer.data.dtype == np.uint8
    assert tuple(layer.scale) == (0.5, 0.5) and tuple(layer.translate) == (10.0, 20.0)
    assert layer.mode == "paint" and layer.selected_label == 2
    assert viewer.layers.selection.active is layer
    assert train.labels.value is layer and train.label_mode.value.startswith("scribbles")
    assert "1 = background" in train.legend.value and "2 = nucleus" in train.legend.value

    set_fast_training(train, epochs=8, steps=10)
    train.labels.value = layer
    train.preview_every.value = 1
    train.start()  # the click itself makes the preview layer (napari takes ~0.3 s for that)
    with _Ticks() as ticks:
        wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    assert train.previews_shown >= 2
    preview = viewer.layers["nuclei preview"]
    assert preview.data.shape[-2:] == (128, 128) or min(preview.data.shape) >= 64
    assert tuple(preview.scale) == (0.5, 0.5)
    assert viewer.layers.selection.active is layer  # the user paints on where they were
    assert np.all(np.asarray(preview.translate) >= (10.0, 20.0))
    assert ticks.longest_gap < 0.5, f"the GUI was blocked for {ticks.longest_gap:.2f} s"
    summary = train.session.summary
    assert summary.class_names == ("background", "nucleus")
    first = len(summary.history["loss"])
    assert train.train_button.text == "Continue training"

    layer.data = np.where(layer.data > 0, layer.data,
                          simulate_scribbles(viewer.layers["truth"].data, 0.01, seed=5))
    train.epochs.value = 3
    train.start()
    with _Ticks() as ticks:
        wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    summary = train.session.summary
    assert len(summary.history["loss"]) == first + summary.info["rounds"][1]["epochs"]
    assert len(summary.info["rounds"]) == 2
    assert len(train.plot.history["loss"]) == len(summary.history["loss"])
    painted = summary.info["rounds"][1]["annotations"][0]
    assert painted["image"] == "nuclei" and painted["annotated"] == int((layer.data > 0).sum())
    assert ticks.longest_gap < 0.5, f"the GUI was blocked for {ticks.longest_gap:.2f} s"


def test_scribble_layer_for_rgb_and_channel_first_layers(viewer_with_widgets, qtbot):
    viewer, w = viewer_with_widgets
    train = w["train"]
    rgb = viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="rgb", rgb=True, scale=(2, 3))
    train.reset_choices()
    train.image.value = rgb
    train.make_scribble_layer()
    assert viewer.layers["rgb scribbles"].data.shape == (40, 50)
    assert tuple(viewer.layers["rgb scribbles"].scale) == (2.0, 3.0)
    channels = viewer.add_image(np.zeros((3, 40, 50), np.float32), name="cyx", rgb=False)
    train.reset_choices()
    train.image.value = channels
    train.axes.value = "CYX"
    train.make_scribble_layer()
    assert viewer.layers["cyx scribbles"].data.shape == (40, 50)
    train.axes.value = "ZYXC"  # wrong for this layer: said, nothing made
    n_layers = len(viewer.layers)
    train.make_scribble_layer()
    assert "Scribbles" in train.last_error and len(viewer.layers) == n_layers


def test_preview_region_of_a_stack_follows_the_slider_and_the_view(viewer_with_widgets):
    from napari_unet._widgets._scribble import preview_layer, preview_region

    viewer, _ = viewer_with_widgets
    stack = viewer.add_image(np.zeros((6, 300, 2000), np.uint16), name="stack",
                             scale=(2.0, 0.5, 0.5), translate=(0.0, 5.0, 0.0))
    viewer.dims.set_point(0, 8.0)  # world z = 8 -> plane 4
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (8.0, 80.0, 500.0)
    camera.zoom = 2.0
    region = preview_region(viewer, stack, "ZYX")
    assert region["plane"] == 4 and region["index"] == (4,)
    rows, cols = region["rows"], region["cols"]
    assert rows == (0, 300)  # the whole height is in view; clipped to the plane
    assert 64 <= cols[1] - cols[0] <= 1024 and cols[0] <= 1000 <= cols[1]
    layer = preview_layer(viewer, stack, "ZYX", region,
                          np.ones((rows[1] - rows[0], cols[1] - cols[0]), np.uint8))
    assert layer.data.shape == (1, rows[1] - rows[0], cols[1] - cols[0])
    np.testing.assert_allclose(layer.translate, (8.0, 5.0 + 0.5 * rows[0], 0.5 * cols[0]))


def test_training_on_folders(viewer_with_widgets, qtbot, tmp_path):
    viewer, w = viewer_with_widgets
    build_tiny(qtbot, w["build"])
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for s in range(2):
        image, labels = make_nuclei((64, 64), seed=40 + s)
        write_image(images / f"cell{s}.tif", image)
        write_image(masks / f"cell{s}.tif", labels)
    train = w["train"]
    set_fast_training(train, epochs=2, steps=3)
    train.source.value = "image and mask folders"
    assert not train.images_dir.native.isHidden() and train.image.native.isHidden()
    train.images_dir.value = str(images)
    train.masks_dir.value = str(tmp_path / "missing")
    train.start()
    wait_for_worker(qtbot, train)
    assert "masks folder" in train.last_error and "does not exist" in train.last_error
    train.masks_dir.value = str(masks)
    train.start()
    wait_for_worker(qtbot, train)
    assert train.last_error == "", train.last_error
    record = train.session.summary.info["annotations"]
    assert [r["image"] for r in record] == ["cell0.tif", "cell1.tif"]


def test_run_adds_uncertainty_maps_eager_and_lazy(viewer_with_widgets, qtbot):
    import dask.array as da

    from napari_unet.prediction.progressive import ProgressiveArray

    viewer, w = viewer_with_widgets
    build_and_train_tiny(qtbot, w)
    run = w["run"]
    run.uncertainty.value = True
    run.passes.value = 3
    run.image.value = viewer.layers["nuclei"]
    run.start()
    wait_for_worker(qtbot, run)
    assert run.last_error == "", run.last_error
    entropy = viewer.layers["nuclei U-Net uncertainty"]
    spread = viewer.layers["nuclei U-Net spread"]
    assert entropy.data.shape == (128, 128) and entropy.data.dtype == np.float32
    assert tuple(entropy.scale) == (0.5, 0.5) and tuple(entropy.translate) == (10.0, 20.0)
    assert spread.data.max() > 0 and not spread.visible
    assert "nuclei U-Net uncertainty" not in [name for name, _ in run._image_layers()]

    data = np.asarray(viewer.layers["nuclei"].data)
    viewer.add_image(da.from_array(data, chunks=64), name="lazy", scale=(0.5, 0.5),
                     translate=(10.0, 20.0))
    run.reset_choices()
    run.image.value = viewer.layers["lazy"]
    run.start()
    wait_for_worker(qtbot, run)
    assert run.last_error == "", run.last_error
    lazy = viewer.layers["lazy U-Net uncertainty"].data
    assert isinstance(lazy, ProgressiveArray)
    np.testing.assert_allclose(np.asarray(lazy), entropy.data, atol=1e-5)
