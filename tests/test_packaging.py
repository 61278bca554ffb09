"""What the package ships and declares: the licence text, project URLs, the Python it needs,
extras that hold what their features import, the library logger, the napari manifest."""

import logging
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_the_bsd_3_clause_licence_ships():
    text = (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause License" in text and "Copyright (c) 2026, napari-unet developers" in text
    assert "Neither the name of the copyright holder" in text  # the third clause
    assert PYPROJECT["license"] == "BSD-3-Clause" and PYPROJECT["license-files"] == ["LICENSE"]


def test_urls_python_and_classifiers_agree():
    assert {"Source Code", "Bug Tracker", "Documentation"} <= set(PYPROJECT["urls"])
    assert PYPROJECT["requires-python"] == ">=3.11"
    versions = [c.rsplit(" ", 1)[1] for c in PYPROJECT["classifiers"]
                if c.startswith("Programming Language :: Python :: 3.")]
    assert versions and all(tuple(map(int, v.split("."))) >= (3, 11) for v in versions)
    assert not any(c.startswith("License ::") for c in PYPROJECT["classifiers"])  # PEP 639


def test_extras_hold_what_their_features_import():
    extras = PYPROJECT["optional-dependencies"]
    assert [r.split(">")[0] for r in extras["bioimageio"]] == ["bioimageio.spec", "pydantic<2.13"]
    assert extras["nifti"] == ["nibabel>=5"]
    assert any(r.startswith("ome-zarr") for r in extras["ome-zarr"])
    test = " ".join(extras["test"])
    for name in ("bioimageio.core", "nibabel", "ome-zarr", "distributed"):
        assert name in test, name


def test_export_imports_bioimageio_spec_only():
    """The ``bioimageio`` extra is spec-only: export's module never names bioimageio.core."""
    source = (ROOT / "src" / "napari_unet" / "bioimageio" / "export.py").read_text()
    imports = [line for line in source.splitlines() if "import" in line and "bioimageio" in line]
    assert imports and all("bioimageio.core" not in line for line in imports)


def test_export_works_without_bioimageio_core(random_tiny, tmp_path, monkeypatch):
    pytest.importorskip("bioimageio.spec")
    for name in [m for m in sys.modules if m.startswith("bioimageio.core")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "bioimageio.core", None)  # importing it now fails
    from napari_unet.bioimageio.export import export_bioimageio

    package = export_bioimageio(random_tiny, tmp_path / "m.zip", authors=["A. Tester"])
    assert package.is_file() and "bioimageio.core" not in [m for m in sys.modules if sys.modules[m]]


def test_library_messages_go_to_the_napari_unet_logger(tmp_path, caplog):
    from napari_unet.common.log import logger
    from napari_unet.prediction.folders import FileResult, _log

    assert logger is logging.getLogger("napari_unet")
    with caplog.at_level(logging.INFO, logger="napari_unet"):
        _log(FileResult("a.tif", "a.tif", "done", index=1, total=2))
        _log(FileResult("b.tif", "b.tif", "failed", error="unreadable"))
    assert [(r.levelname, r.name) for r in caplog.records] == [("INFO", "napari_unet"),
                                                               ("WARNING", "napari_unet")]
    assert "b.tif failed: unreadable" in caplog.records[1].getMessage()


def test_the_manifest_validates_and_its_menu_is_napari_s_segment_menu():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(ROOT / "src" / "napari_unet" / "napari.yaml")
    commands = {c.id for c in manifest.contributions.commands}
    menus = manifest.contributions.menus
    assert list(menus) == ["napari/layers/segment"]
    assert all(item.command in commands for item in menus["napari/layers/segment"])
    from napari._app_model.constants import MenuId

    assert "napari/layers/segment" in {m.value for m in MenuId}


def test_debug_shows_the_library_log_on_standard_error(tmp_path, capsys):
    import numpy as np
    import tifffile

    from napari_unet.cli import main

    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, np.zeros((2, 8, 8), np.uint16), imagej=True,
                     metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"})
    main(["--debug", "predict", str(tmp_path / "missing.keras"), str(source),
          str(tmp_path / "o.tif")])
    assert "napari-unet: INFO: read stack.tif" in capsys.readouterr().err
