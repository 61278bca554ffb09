"""The plugin is found through its manifest, and napari + its widgets never import TensorFlow."""

import subprocess
import sys
import textwrap

from magicgui.widgets import Container

from napari_unet._widgets import BuildWidget, RunWidget, TrainWidget


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-unet")
    names = {w.display_name for w in manifest.contributions.widgets}
    assert names == {"U-Net", "U-Net: Build", "U-Net: Train", "U-Net: Run"}
    assert {s.key for s in manifest.contributions.sample_data} == {"nuclei", "nuclei_3d"}
    result = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-unet", "--imports"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_widgets_open_through_the_manifest_with_tooltips_everywhere(viewer_with_widgets):
    viewer, widgets = viewer_with_widgets
    assert isinstance(widgets["build"], BuildWidget)
    assert isinstance(widgets["train"], TrainWidget)
    assert isinstance(widgets["run"], RunWidget)
    for widget in widgets.values():
        for control in widget:
            if isinstance(control, Container) and control.name != "plot":
                continue
            assert control.tooltip, f"{type(widget).__name__}.{control.name} has no tooltip"
    build = widgets["build"]
    assert "receptive field" in build.summary.value


def test_build_summary_shows_the_classic_unet(make_napari_viewer):
    viewer = make_napari_viewer()
    build = BuildWidget(viewer)
    assert "2,158,417 parameters" in build.summary.value
    assert "97.1 GFLOP" in build.summary.value
    assert "receptive field 230 px" in build.summary.value
    build.depth.value = 2
    assert "2,158,417" not in build.summary.value


def test_sample_data_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "nuclei")
    assert [layer.name for layer in viewer.layers] == ["nuclei", "nuclei ground truth"]
    assert type(viewer.layers["nuclei ground truth"]).__name__ == "Labels"


def test_napari_menu_and_widgets_do_not_import_tensorflow():
    code = textwrap.dedent("""
        import sys
        import napari
        viewer = napari.Viewer(show=False)
        viewer.open_sample("napari-unet", "nuclei")
        for name in ("U-Net", "U-Net: Build", "U-Net: Train", "U-Net: Run"):
            viewer.window.add_plugin_dock_widget("napari-unet", name)
        menu = viewer.window.plugins_menu
        texts = [a.text() for a in menu.actions()]
        heavy = sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules)
        print("HEAVY", heavy)
        print("MENU", texts)
        viewer.close()
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout, result.stdout
