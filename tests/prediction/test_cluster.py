"""Folder prediction on a dask.distributed cluster gives what a local run gives: the same
outputs, the same summary, the same resume rules."""

import csv

import numpy as np
import pytest

from napari_unet.cli import main
from napari_unet.io.images import read_image, write_image
from napari_unet.model.files import save_model
from napari_unet.prediction.folders import SUMMARY, predict_folder
from napari_unet.samples.nuclei import make_nuclei

distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as local:
        yield local


def _summary(folder):
    with open(folder / SUMMARY, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def _folder(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    for seed in (1, 2):
        write_image(images / f"cell{seed}.tif", make_nuclei((64, 80), seed=seed)[0])
    zarr.save_array(str(images / "big.zarr"), make_nuclei((64, 80), seed=3)[0])
    return images


def test_a_cluster_run_equals_the_local_run(tmp_path, trained_tiny, cluster):
    images = _folder(tmp_path)
    local = predict_folder(trained_tiny, images, tmp_path / "local")
    worker = next(iter(cluster.workers.values()))
    before = worker.state.transition_counter
    remote = predict_folder(trained_tiny, images, tmp_path / "remote",
                            scheduler=cluster.scheduler_address)
    assert worker.state.transition_counter > before  # the work ran on the cluster's worker
    assert [r.status for r in remote] == ["done"] * 3, [r.error for r in remote]
    assert [r.file for r in remote] == [r.file for r in local]  # summary order: file order
    assert _summary(tmp_path / "remote") == _summary(tmp_path / "local")
    for name in ("cell1.tif", "cell2.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / "remote" / name),
                                      read_image(tmp_path / "local" / name))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "remote" / "big.zarr"))[:],
                                  zarr.open_array(str(tmp_path / "local" / "big.zarr"))[:])
    again = predict_folder(trained_tiny, images, tmp_path / "remote",
                           scheduler=cluster.scheduler_address)
    assert [r.status for r in again] == ["skipped"] * 3


def test_the_command_line_takes_a_scheduler_for_folders_only(tmp_path, trained_tiny, cluster,
                                                             capsys):
    images = _folder(tmp_path)
    model = str(save_model(trained_tiny, tmp_path / "m.keras"))
    address = cluster.scheduler_address
    assert main(["predict", model, str(images), str(tmp_path / "out"), "--scheduler",
                 address]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "big.zarr", "cell1.tif", "cell2.tif", SUMMARY]
    assert main(["predict", model, str(images / "big.zarr"), str(tmp_path / "one.zarr"),
                 "--scheduler", address]) == 0
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "one.zarr"))[:],
                                  zarr.open_array(str(tmp_path / "out" / "big.zarr"))[:])
    assert main(["predict", model, str(images / "cell1.tif"), str(tmp_path / "o.tif"),
                 "--scheduler", address]) == 2
    assert "single image file runs here" in capsys.readouterr().err


def test_an_unreachable_scheduler_is_said_and_leaves_nothing_behind(tmp_path, trained_tiny,
                                                                     monkeypatch):
    from napari_unet.prediction import cluster as cluster_module

    images = _folder(tmp_path)
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT", 1.0)
    with pytest.raises(ValueError, match="Could not reach the dask scheduler"):
        predict_folder(trained_tiny, images, tmp_path / "out", scheduler="tcp://127.0.0.1:9")
    assert not (tmp_path / "out").exists()


def test_a_cluster_of_worker_processes_gets_the_model_as_bytes(tmp_path, trained_tiny):
    """Workers in other processes load the model from its .keras bytes: same labels."""
    images = tmp_path / "in"
    images.mkdir()
    write_image(images / "cell.tif", make_nuclei((64, 80), seed=5)[0])
    predict_folder(trained_tiny, images, tmp_path / "local")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        predict_folder(trained_tiny, images, tmp_path / "remote",
                       scheduler=local.scheduler_address)
    np.testing.assert_array_equal(read_image(tmp_path / "remote" / "cell.tif"),
                                  read_image(tmp_path / "local" / "cell.tif"))
