"""Model files and a bioimage.io package saved by napari-unet v0.2 (tests/data/README.md)
load today and predict the probabilities they predicted then."""

from pathlib import Path

import numpy as np
import pytest

from napari_unet import load_model, predict
from napari_unet.model.decoding import Decoding

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def expected():
    with np.load(DATA / "v0.2_expected.npz") as stored:
        return dict(stored)


@pytest.mark.parametrize("name", ["v0.2_boundary.keras", "v0.2_foreground.keras",
                                  "v0.2_boundary_bioimageio.zip"])
def test_a_file_saved_by_v0_2_predicts_the_same_probabilities(name, expected):
    model = load_model(DATA / name)
    probs = predict(model, expected["image"])
    np.testing.assert_allclose(probs, expected[name.replace(".", "_")], atol=1e-5)


def test_a_v0_2_file_keeps_its_decoding_values():
    boundary = load_model(DATA / "v0.2_boundary.keras")
    assert boundary.target == "boundary"
    assert boundary.decoding == Decoding(0.45, 0.6, 5, 4)
    assert boundary.linked_decoding == Decoding(0.4, 0.7, 9, 3)
    assert boundary.summary.trained and boundary.info["calibration"]["metric"] == "ap@0.5"
    foreground = load_model(DATA / "v0.2_foreground.keras")
    assert foreground.target == "foreground" and foreground.decoding == Decoding(0.55)
    assert foreground.linked_decoding is None
    package = load_model(DATA / "v0.2_boundary_bioimageio.zip")
    assert package.summary == boundary.summary
