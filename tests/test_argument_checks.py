"""Every public function checks its arguments before any work, with a message naming them."""

import warnings

import numpy as np
import pytest

from napari_unet.common.arrays import check_labels
from napari_unet.labels.options import LabelOptions
from napari_unet.model.config import UNetConfig
from napari_unet.model.network import build_unet
from napari_unet.model.normalization import PercentileNormalization
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.api import predict, segment
from napari_unet.training.job import train

from .helpers import TINY

FAST = dict(patch_size=32, batch_size=2, epochs=1, steps_per_epoch=2, seed=0, verbose=False)


@pytest.mark.parametrize("kwargs, name", [
    ({"batch_size": -1}, "batch_size"), ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 1.5}, "batch_size"), ({"batch_size": True}, "batch_size"),
    ({"tile_size": 7}, "tile_size"), ({"tile_size": -64}, "tile_size"),
    ({"memory_budget": -1}, "memory_budget"), ({"memory_budget": 0.5}, "memory_budget"),
    ({"axes": 123}, "axes"), ({"axes": "YXQ"}, "axes"),
])
def test_predict_refuses_bad_options(random_tiny, kwargs, name):
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match=name):
        predict(random_tiny, image, **kwargs)


def test_batch_size_of_numpy_type_is_accepted(random_tiny):
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    a = predict(random_tiny, image, batch_size=np.int64(2), tile_size=np.int32(128))
    np.testing.assert_array_equal(a, predict(random_tiny, image))


@pytest.mark.parametrize("threshold", [1.5, -1, 0.0, 1.0, float("nan"), float("inf"), True, "0.5"])
def test_segment_refuses_thresholds_outside_0_1(random_tiny, threshold):
    with pytest.raises(ValueError, match="threshold"):
        segment(random_tiny, np.zeros((64, 64), np.float32), threshold=threshold)


@pytest.mark.parametrize("value", [True, False])
def test_segment_asked_for_probabilities_points_to_probabilities_and_labels(random_tiny, value):
    with pytest.raises(ValueError, match="probabilities_and_labels"):
        segment(random_tiny, np.zeros((64, 64), np.float32), probabilities=value)


@pytest.mark.parametrize("kwargs, name", [({"min_size": -5}, "min_size"),
                                          ({"min_size": 2.5}, "min_size"),
                                          ({"instances": "yes"}, "instances"),
                                          ({"link_planes": 1}, "link_planes")])
def test_label_options_are_checked(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LabelOptions(**kwargs)
    assert LabelOptions(min_size=np.int64(3), instances=np.bool_(False)).min_size == 3


def test_an_rgb_picture_on_a_grey_model_is_refused_with_advice(random_tiny):
    rgb = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match="RGB"):
        predict(random_tiny, rgb)
    assert predict(random_tiny, rgb, axes="ZYX").shape == rgb.shape  # when it really is a stack


def test_float64_beyond_float32_range_normalises_like_the_scaled_image(random_tiny, nuclei):
    image = nuclei[0].astype(np.float64)
    huge = image * 1e300
    probs = predict(random_tiny, huge)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs, predict(random_tiny, image), atol=1e-5)
    planes = huge[None, ..., None]
    assert np.isfinite(PercentileNormalization().apply(planes)).all()


def test_train_refuses_a_model_that_is_not_a_config_or_model(nuclei):
    with pytest.raises(ValueError, match="model must be a UNetConfig"):
        train(*nuclei, "abc", **FAST)


@pytest.mark.parametrize("kwargs, name", [
    ({"learning_rate": float("inf")}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"), ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"epochs": 0}, "epochs"), ({"batch_size": 2.0}, "batch_size"), ({"patch_size": 30}, "patch_size"),
    ({"verbose": "loud"}, "verbose"), ({"axes": ["YX", "YX"]}, "axes"),
])
def test_train_refuses_bad_settings(nuclei, kwargs, name):
    with pytest.raises(ValueError, match=name):
        train(*nuclei, TINY, **{**FAST, **kwargs})


def test_build_unet_refuses_anything_but_a_config():
    with pytest.raises(ValueError, match="UNetConfig"):
        build_unet("abc")


def test_config_accepts_numpy_numbers_and_stores_python_ones():
    config = UNetConfig(start_neurons=np.int64(4), depth=np.int32(2), dropout=np.float32(0.25),
                        batch_norm=np.bool_(True))
    assert type(config.start_neurons) is int and type(config.dropout) is float
    assert UNetConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("labels, fragment", [
    (np.full((8, 8), -1.0), "negative"), (np.full((8, 8), 1e30), "more than"),
    (np.full((8, 8), -2, np.int16), "negative"), (np.zeros((0, 0), np.uint8), "shape"),
])
def test_labels_are_checked(labels, fragment):
    with pytest.raises(ValueError, match=fragment):
        check_labels(labels, labels.shape if labels.size else (1, 1))


def test_a_loss_that_is_nan_from_the_start_gives_no_model(nuclei):
    unet = UNetModel.new(TINY)
    unet.keras_model.set_weights([np.full_like(w, np.nan) for w in unet.keras_model.get_weights()])
    with pytest.raises(ValueError, match="diverged.*learning rate"):
        train(*nuclei, unet, **FAST)


def test_divergence_after_a_good_epoch_keeps_the_last_finite_weights(nuclei, monkeypatch):
    """NaN pixels from the third batch on (the first of epoch 2) make the loss NaN:
    training stops and keeps epoch 1's weights, on every backend."""
    from napari_unet.training.sampling import PatchSampler

    original = PatchSampler.stream

    def poisoned(self, *args, **kwargs):
        for k, (x, y) in enumerate(original(self, *args, **kwargs)):
            yield (np.full_like(x, np.nan) if k >= 2 else x), y

    monkeypatch.setattr(PatchSampler, "stream", poisoned)
    unet = UNetModel.new(TINY)
    with pytest.warns(RuntimeWarning, match="kept the weights of epoch 1"):
        result = train(*nuclei, unet, **{**FAST, "epochs": 3})
    assert result.model.info["best_epoch"] == 1 and "epoch 2" in result.model.info["diverged"]
    assert all(np.isfinite(w).all() for w in result.model.keras_model.get_weights())
    assert len(result.history["loss"]) == 1


def test_train_prints_progress_unless_asked_not_to(nuclei, capsys):
    train(*nuclei, TINY, **{**FAST, "verbose": True})
    assert "epoch 1/1:" in capsys.readouterr().err
    train(*nuclei, TINY, **FAST)
    assert capsys.readouterr().err == ""


def test_a_tile_much_smaller_than_the_halo_warns(random_tiny):
    image = np.zeros((300, 300), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predict(random_tiny, image, tile_size=80)
    assert any("halo" in str(w.message) for w in caught)


def test_dask_inputs_are_checked_before_a_graph_is_built(random_tiny):
    da = pytest.importorskip("dask.array")
    with pytest.raises(ValueError, match="empty"):
        predict(random_tiny, da.zeros((0, 0)))
    with pytest.raises(ValueError, match="channel"):
        predict(random_tiny, da.zeros((2, 64, 64), chunks=32), axes="CYX")
    with pytest.raises(ValueError, match="dtype"):
        predict(random_tiny, da.zeros((64, 64), dtype=complex))
    with pytest.raises(ValueError, match="batch_size"):
        predict(random_tiny, da.zeros((64, 64)), batch_size=0)
    thin = np.random.default_rng(1).random((1, 700)).astype(np.float32)
    lazy = predict(random_tiny, da.from_array(thin, chunks=(1, 200)))
    np.testing.assert_allclose(lazy.compute(), predict(random_tiny, thin), atol=1e-6)


@pytest.mark.parametrize("sizes", [{"patch_size": 30000}, {"batch_size": 2_000_000},
                                   {"batch_size": 10**9}])
def test_training_sizes_beyond_the_machine_are_a_value_error_before_any_allocation(nuclei,
                                                                                   sizes):
    with pytest.raises(ValueError, match="GiB are free; use smaller patches or batches"):
        train(*nuclei, TINY, verbose=False, **sizes)
