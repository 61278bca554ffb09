"""Output safety: checks before the work, atomic writes, left-overs of killed writers."""

import os
import subprocess
import sys
import time

import pytest

from napari_unet.io.outputs import (
    STALE_PARTIAL_AGE_S,
    atomic_path,
    check_outputs,
    partial_name,
    same_or_inside,
)


def test_same_or_inside_follows_links_and_folders(tmp_path):
    a = tmp_path / "a.tif"
    a.write_bytes(b"x")
    link = tmp_path / "link.tif"
    link.symlink_to(a)
    hard = tmp_path / "hard.tif"
    os.link(a, hard)
    assert same_or_inside(a, link) and same_or_inside(a, hard)
    assert same_or_inside(tmp_path / "in.zarr" / "x.zarr", tmp_path / "in.zarr")
    assert not same_or_inside(a, tmp_path / "b.tif")


def test_check_outputs(tmp_path):
    src = tmp_path / "in.tif"
    src.write_bytes(b"x")
    check_outputs({"out": tmp_path / "o.tif"}, {"input": src})
    with pytest.raises(ValueError, match="would overwrite the input"):
        check_outputs({"out": src}, {"input": src}, overwrite=True)
    with pytest.raises(ValueError, match="same path"):
        check_outputs({"a": tmp_path / "o.tif", "b": tmp_path / "o.tif"}, {})
    with pytest.raises(ValueError, match="already exists"):
        check_outputs({"out": src}, {})
    with pytest.raises(ValueError, match="does not exist"):
        check_outputs({"out": tmp_path / "no" / "o.tif"}, {})
    with pytest.raises(ValueError, match="is a folder"):
        check_outputs({"out": tmp_path}, {}, overwrite=True)
    check_outputs({"out": tmp_path / "o.zarr"}, {}, folders=("out",))


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_path_swaps_folders(tmp_path):
    target = tmp_path / "out.zarr"
    target.mkdir()
    (target / "old").write_text("1")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert sorted(tmp_path.iterdir()) == [target]


def test_partials_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "labels.tif"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = time.time() - STALE_PARTIAL_AGE_S - 10
        stale = target.with_name(f".labels.{int(dead.stdout)}.0123abcd.tif")
        busy = target.with_name(f".labels.{live.pid}.0123abcd.tif")
        recent = target.with_name(f".labels.{int(dead.stdout)}.89abcdef.tif")
        for path in (stale, busy, recent):
            path.write_bytes(b"partial")
        os.utime(stale, (old, old))
        os.utime(busy, (old, old))
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"done")
        assert not stale.exists() and busy.exists() and recent.exists()
    finally:
        live.kill()
        live.wait()


def test_partial_names_keep_the_suffix_and_name_the_process(tmp_path):
    name = partial_name(tmp_path / "m.keras").name
    assert name.startswith(f".m.{os.getpid()}.") and name.endswith(".keras")
