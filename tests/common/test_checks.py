"""Argument checks accept numpy scalars and name the argument when they refuse."""

import numpy as np
import pytest

from napari_unet.common.checks import check_switch, check_whole, is_real, is_whole


def test_numbers_of_every_kind():
    assert is_whole(3) and is_whole(np.int64(3)) and not is_whole(True) and not is_whole(3.0)
    assert is_real(0.5) and is_real(np.float32(0.5)) and is_real(2)
    assert not is_real(float("nan")) and not is_real(float("inf")) and not is_real(np.bool_(1))
    assert check_whole("n", np.uint8(4), 1, 10) == 4 and type(check_whole("n", np.uint8(4), 1)) is int
    assert check_switch("flag", np.bool_(True)) is True


@pytest.mark.parametrize("value", [0, 11, 2.5, "3", None, False])
def test_check_whole_names_the_argument(value):
    with pytest.raises(ValueError, match="depth must be a whole number in 1..10"):
        check_whole("depth", value, 1, 10)


def test_check_switch_refuses_numbers():
    with pytest.raises(ValueError, match="flag must be True or False"):
        check_switch("flag", 1)
