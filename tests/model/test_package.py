"""bioimage.io packages are read under the same rules as model files: a regular file,
entries counted and sizes bounded before anything is read, errors naming the package."""

import os
import zipfile

import pytest

from napari_unet.model.file_format import ModelFileError
from napari_unet.model.files import load_model, save_model
from napari_unet.model.package import PACKAGE_ATTACHMENT


def _package(path, attachment: bytes | None = None, zeros: int = 0, **extra):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("rdf.yaml", "format_version: 0.5.0\n")
        if zeros:
            with zf.open(PACKAGE_ATTACHMENT, "w", force_zip64=True) as f:
                for _ in range(zeros):
                    f.write(bytes(1 << 20))
        elif attachment is not None:
            zf.writestr(PACKAGE_ATTACHMENT, attachment)
        for name, data in extra.items():
            zf.writestr(name, data)
    return path


def test_an_attachment_that_would_expand_far_is_refused_unread(tmp_path):
    """64 MiB of zeros stored in 64 KiB: refused from the declared sizes, nothing extracted."""
    with pytest.raises(ModelFileError, match="decompression bomb") as err:
        load_model(_package(tmp_path / "bomb.zip", zeros=64))
    assert "bomb.zip" in str(err.value)


@pytest.mark.parametrize("kind", ["fifo", "device link", "folder"])
def test_a_package_path_that_is_no_regular_file_is_refused_before_it_is_opened(tmp_path, kind):
    path = tmp_path / "x.zip"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device link":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(ModelFileError, match="not a regular file|is a folder"):
        load_model(path)


def test_zips_declaring_too_many_entries_are_refused_before_their_directory_is_read(tmp_path):
    many = tmp_path / "many.keras"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(65):
            zf.writestr(f"e{i}", b"")
    with pytest.raises(ModelFileError, match="holds 65 entries"):
        load_model(many)
    # an end-of-directory record claiming 65,535+ entries (zip64) is refused unread too
    crafted = tmp_path / "crafted.zip"
    crafted.write_bytes(b"PK\x05\x06" + b"\x00" * 4 + b"\xff\xff" * 2 + b"\x00" * 10)
    with pytest.raises(ModelFileError, match="65,535 or more entries"):
        load_model(crafted)


def test_errors_inside_a_package_name_the_package_not_a_temporary_file(tmp_path, trained_tiny):
    broken = _package(tmp_path / "broken.zip", attachment=b"not a zip at all")
    with pytest.raises(ModelFileError) as err:
        load_model(broken)
    assert "broken.zip" in str(err.value) and "napari-unet-import" not in str(err.value)
    with pytest.raises(ModelFileError, match="was not exported by napari-unet"):
        load_model(_package(tmp_path / "other.zip"))


def test_a_package_with_a_good_attachment_loads(tmp_path, trained_tiny):
    model_file = save_model(trained_tiny, tmp_path / "m.keras")
    loaded = load_model(_package(tmp_path / "ok.zip", attachment=model_file.read_bytes()))
    assert loaded.summary == trained_tiny.summary
