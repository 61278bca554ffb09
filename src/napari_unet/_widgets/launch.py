"""Open napari with the demo's results and the U-Net dock (Build, Train and Run tabs) (``napari-unet demo --gui``)."""

from __future__ import annotations

from pathlib import Path


def open_demo_viewer(out_dir: Path, show: bool = True):
    """Show the demo's held-out image, ground truth and prediction (files written by
    ``napari-unet demo`` in ``out_dir``), with the U-Net dock (Build/Train/Run tabs).

    The trained ``out_dir/model.keras`` is loaded into the viewer's session.
    Returns the viewer; with ``show`` the Qt event loop runs until the window is closed.
    """
    import napari
    import tifffile

    out_dir = Path(out_dir)
    viewer = napari.Viewer(show=show, title="napari-unet demo")
    viewer.add_image(tifffile.imread(out_dir / "image.tif"), name="held-out nuclei", colormap="gray")
    viewer.add_labels(tifffile.imread(out_dir / "truth.tif"), name="ground truth", opacity=0.4,
                      visible=False)
    viewer.add_labels(tifffile.imread(out_dir / "labels.tif"), name="held-out nuclei U-Net",
                      opacity=0.6)
    _, dock = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net")
    model_path = out_dir / "model.keras"
    build = dock.build
    if model_path.is_file():
        build.load_path.value = model_path
        build.load()
    if show:
        napari.run()
    return viewer
