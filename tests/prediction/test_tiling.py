"""Tile plans: windows on the pooling grid that cover every pixel exactly once."""

import numpy as np
import pytest

from napari_unet.prediction.tiling import plan_tiles


def test_tile_plan_covers_every_pixel_once():
    _, tiles = plan_tiles((208, 304), 112, 32, 16)
    cover = np.zeros((208, 304), int)
    for t in tiles:
        cover[t.core] += 1
        ys, xs = t.window
        assert ys.start % 16 == 0 and xs.start % 16 == 0
        assert ys.stop - ys.start == 112 and xs.stop - xs.start == 112
    assert np.all(cover == 1)
    with pytest.raises(ValueError, match="larger than twice the halo"):
        plan_tiles((64, 64), 64, 32, 16)
