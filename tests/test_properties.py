"""Property-based checks: any input gives a correct result or a clear ValueError/TypeError,
never a crash, a hang, garbage, or a change to the caller's arrays.

Example counts are bounded (``settings`` below) so the suite stays fast; the
figures in docs/reliability.md come from runs with larger counts
(``NAPARI_UNET_EXAMPLES=500``).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_unet.labels.metrics import foreground_iou, matched_objects
from napari_unet.model.config import UNetConfig
from napari_unet.model.unet import UNetModel
from napari_unet.prediction.api import predict, segment
from napari_unet.training.job import train

EXAMPLES = int(os.environ.get("NAPARI_UNET_EXAMPLES", "25"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
CLEAR = (ValueError, TypeError)

DTYPES = st.sampled_from([np.bool_, np.uint8, np.uint16, np.int8, np.int32, np.int64,
                          np.uint64, np.float16, np.float32, np.float64, np.complex64])
SHAPES = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=12)
ODD = st.one_of(st.none(), st.integers(-5, 300), st.floats(allow_nan=True, allow_infinity=True),
                st.booleans(), st.text(max_size=3))


def mostly(valid, weight=3):
    """``valid`` values ``weight`` times as often as odd ones (of any type and range)."""
    return st.sampled_from(range(weight + 1)).flatmap(lambda k: ODD if k == weight else valid)


THRESHOLD = mostly(st.one_of(st.none(), st.floats(0.01, 0.99)))
MIN_SIZE = mostly(st.integers(0, 40))
SWITCH = mostly(st.booleans())


@pytest.fixture(scope="module")
def model():
    """A depth-1 U-Net with two filters: fast to run on any shape."""
    return UNetModel.new(UNetConfig(depth=1, start_neurons=2))


def _arrays(dtype=DTYPES, shape=SHAPES):
    def elements(dt):
        dt = np.dtype(dt)
        if dt.kind == "f":  # NaN, inf and values beyond float32's range included
            return st.floats(allow_nan=True, allow_infinity=True, width=dt.itemsize * 8)
        return None
    return st.one_of(dtype.flatmap(lambda dt: hnp.arrays(dt, shape, elements=elements(dt))))


def _check_probabilities(probs, image, axes_has_channel=False):
    assert isinstance(probs, np.ndarray) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and probs.min() >= 0 and probs.max() <= 1
    expected = image.shape[:-1] if axes_has_channel else image.shape
    assert probs.shape == expected


@SETTINGS
@given(image=_arrays(), tile=ODD, batch=ODD)
def test_predict_gives_probabilities_or_a_clear_error(model, image, tile, batch):
    before = image.copy()
    try:
        probs = predict(model, image, tile_size=tile, batch_size=batch)
    except CLEAR as err:
        event(f"refused: {str(err)[:40]}")
    else:
        event("predicted")
        _check_probabilities(probs, image)
        assert np.isfinite(image.astype(np.complex128)).all()  # non-finite images are refused
    np.testing.assert_array_equal(image, before)


PLAUSIBLE = _arrays(st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]),
                    hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=24))


@SETTINGS
@given(image=PLAUSIBLE, tile=mostly(st.one_of(st.none(), st.integers(1, 12).map(lambda k: 16 * k))),
       batch=mostly(st.one_of(st.none(), st.integers(1, 8))), axes=mostly(st.none()))
def test_predict_on_plausible_images(model, image, tile, batch, axes):
    before = image.copy()
    try:
        probs = predict(model, image, tile_size=tile, batch_size=batch, axes=axes)
    except CLEAR as err:
        event(f"refused: {str(err)[:40]}")
    else:
        event("predicted")
        _check_probabilities(probs, image)
    np.testing.assert_array_equal(image, before)


@SETTINGS
@given(image=PLAUSIBLE, threshold=THRESHOLD, min_size=MIN_SIZE, instances=SWITCH, split=SWITCH,
       link=SWITCH)
def test_segment_gives_labels_or_a_clear_error(model, image, threshold, min_size, instances, split,
                                               link):
    before = image.copy()
    try:
        labels = segment(model, image, threshold=threshold, min_size=min_size,
                         instances=instances, split_touching=split, link_planes=link)
    except CLEAR as err:
        event(f"refused: {str(err)[:40]}")
    else:
        event("segmented")
        assert labels.shape == image.shape and labels.dtype.kind == "u"
        assert threshold is None or 0.0 < threshold < 1.0
        if instances is False:
            assert labels.max() <= 1
    np.testing.assert_array_equal(image, before)


def _small_labels(dtype, low=0):
    low = 0 if np.dtype(dtype).kind in "ub" else low
    high = 1 if dtype is np.bool_ else 3
    return hnp.arrays(dtype, (16, 16), elements=st.integers(low, high).map(dtype),
                      fill=st.nothing())


LABEL_DTYPES = st.sampled_from([np.uint8, np.int32, np.int64, np.float32, np.float64, np.bool_])
LABELS = st.one_of(
    LABEL_DTYPES.flatmap(_small_labels), LABEL_DTYPES.flatmap(_small_labels),
    LABEL_DTYPES.flatmap(lambda dt: _small_labels(dt, low=-2)),
    hnp.arrays(np.float64, st.just((16, 16)), elements=st.floats(allow_nan=True)),
    hnp.arrays(np.uint16, hnp.array_shapes(min_dims=1, max_dims=3, max_side=16)),
)


@settings(SETTINGS, max_examples=max(5, EXAMPLES // 3))
@given(labels=LABELS, mode=mostly(st.sampled_from(["dense", "sparse"]), weight=8),
       lr=mostly(st.floats(1e-5, 1e-1), weight=8))
def test_train_gives_a_finite_model_or_a_clear_error(labels, mode, lr):
    image = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    before_i, before_l = image.copy(), labels.copy()
    try:
        result = train(image, labels, UNetConfig(depth=1, start_neurons=2), patch_size=8,
                       batch_size=1, epochs=1, steps_per_epoch=1, learning_rate=lr,
                       label_mode=mode, verbose=False, seed=0)
    except CLEAR as err:
        event(f"refused: {str(err)[:40]}")
    else:
        event("trained")
        assert all(np.isfinite(w).all() for w in result.model.keras_model.get_weights())
        assert mode in ("dense", "sparse") and 0 < lr < 1
    np.testing.assert_array_equal(image, before_i)
    np.testing.assert_array_equal(labels, before_l)


@SETTINGS
@given(pred=_arrays(st.sampled_from([np.uint8, np.int32, np.float32, np.bool_]),
                    hnp.array_shapes(min_dims=1, max_dims=3, max_side=10)),
       truth=_arrays(st.sampled_from([np.uint8, np.uint16, np.int64]),
                     hnp.array_shapes(min_dims=1, max_dims=3, max_side=10)))
def test_evaluation_scores_lie_in_0_1_or_a_clear_error(pred, truth):
    from napari_unet.labels.metrics import evaluate

    for measure in (foreground_iou, matched_objects, evaluate):
        try:
            score = measure(pred, truth)
        except CLEAR:
            continue
        if isinstance(score, float):
            values = [score]
        else:
            values = [v for k, v in score.items() if k.split("@")[0] in (
                "precision", "recall", "f1", "ap", "mean_ap", "dice", "foreground_iou")]
        assert values and all(0.0 <= v <= 1.0 for v in values)


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory, model):
    from napari_unet.io.images import write_image
    from napari_unet.model.files import save_model

    folder = tmp_path_factory.mktemp("cli")
    write_image(folder / "in.tif", np.random.default_rng(0).integers(0, 999, (40, 40), np.uint16))
    return {"model": str(save_model(model, folder / "m.keras")), "image": str(folder / "in.tif"),
            "dir": folder}


@settings(SETTINGS, max_examples=max(5, EXAMPLES // 2))
@given(option=st.sampled_from(["--threshold", "--min-size", "--tile-size", "--batch-size",
                               "--axes", "--probabilities"]),
       value=st.one_of(st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=6),
                       st.integers(-10, 400).map(str), st.floats().map(str)))
def test_cli_predict_any_option_value_exits_cleanly(cli_files, option, value):
    import contextlib
    import io as _io

    from napari_unet.cli import main

    before = open(cli_files["image"], "rb").read()
    out = cli_files["dir"] / "out.tif"
    err = _io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(_io.StringIO()):
        try:
            status = main(["predict", cli_files["model"], cli_files["image"], str(out),
                           "--overwrite", option, value])
        except SystemExit as exit_info:  # argparse refusing the value
            status = exit_info.code
    assert status in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    event("written" if status == 0 else "refused")
    assert open(cli_files["image"], "rb").read() == before
    if status == 0:
        from napari_unet.io.images import read_image

        assert read_image(out).shape == (40, 40)


@settings(SETTINGS, max_examples=max(10, EXAMPLES))
@given(data=st.data())
def test_load_model_of_any_bytes_is_a_model_or_a_model_file_error(cli_files, data):
    from napari_unet.model.files import ModelFileError, load_model

    good = open(cli_files["model"], "rb").read()
    kind = data.draw(st.sampled_from(["random", "flip", "truncate", "splice"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=2048))
    elif kind == "flip":
        at = data.draw(st.integers(0, len(good) - 1))
        blob = good[:at] + bytes([good[at] ^ data.draw(st.integers(1, 255))]) + good[at + 1:]
    elif kind == "truncate":
        blob = good[:data.draw(st.integers(0, len(good) - 1))]
    else:
        at = data.draw(st.integers(0, len(good)))
        blob = good[:at] + data.draw(st.binary(min_size=1, max_size=64)) + good[at:]
    path = cli_files["dir"] / "fuzz.keras"
    path.write_bytes(blob)
    try:
        model = load_model(path)
    except ModelFileError as err:
        assert str(path) in str(err)
        event(f"{kind}: refused")
    else:
        event(f"{kind}: loaded")
        probe = np.zeros((1, 16, 16, 1), np.float32)
        assert np.isfinite(model.keras_model.predict_on_batch(probe)).all()
