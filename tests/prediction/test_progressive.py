"""ProgressiveArray: indexing never computes, shows computed chunks, queues the rest."""

import dask.array as da
import numpy as np
import pytest

from napari_unet.common.progress import drain
from napari_unet.prediction.progressive import ProgressiveArray, iter_fill

KEYS = [(1,), (1, slice(None), slice(None)), (slice(0, 2), slice(5, 40, 3), slice(None, None, 7)),
        (2, 17, slice(3, 60)), (Ellipsis, 5), (0, Ellipsis), (-1, slice(-20, None))]


@pytest.fixture
def data():
    return np.random.default_rng(0).integers(1, 100, (3, 50, 70)).astype(np.uint16)


def test_indexing_queues_and_fill_gives_the_computed_values(data):
    computed = []
    lazy = da.from_array(data, chunks=(1, 16, 23)).map_blocks(
        lambda b: (computed.append(1), b)[1], dtype=data.dtype, meta=np.empty((0, 0, 0), data.dtype))
    requests = []
    array = ProgressiveArray(lazy, on_request=lambda: requests.append(1))
    assert (array.shape, array.dtype, array.ndim, len(array)) == (data.shape, data.dtype, 3, 3)
    for key in KEYS:
        assert array[key].shape == data[key].shape and not array[key].any()
    assert not computed, "indexing computed something"
    assert requests and array.pending == len(set(array._pending))
    assert drain(iter_fill([array])) == array.chunks_done > 0
    for key in KEYS:
        np.testing.assert_array_equal(array[key], data[key])
    np.testing.assert_array_equal(np.asarray(array), data)


def test_newest_view_first_pause_and_eviction(data):
    array = ProgressiveArray(da.from_array(data, chunks=(1, 50, 70)), max_bytes=2 * 50 * 70 * 2)
    array[0]
    array[2]
    assert array.compute_next() == (2, 0, 0)  # the plane viewed last goes first
    array.forget_pending()
    assert array.pending == 0 and array.compute_next() is None
    array.paused = True
    array[1]
    assert array.pending == 0
    array.paused = False
    array[1], array[0]
    drain(iter_fill([array]))
    assert array.chunks_done == 2  # kept up to max_bytes: the oldest went
    assert not array[2].any()
    np.testing.assert_array_equal(array[0], data[0])


def test_stop_between_chunks_and_bad_keys(data):
    array = ProgressiveArray(da.from_array(data, chunks=(1, 25, 35)))
    array[:]
    events = []
    drain(iter_fill([array], should_stop=lambda: len(events) >= 3), events.append)
    assert array.chunks_done == 3 and array.pending == 9
    with pytest.raises(IndexError, match="out of bounds"):
        array[3]
    with pytest.raises(IndexError, match="positive step"):
        array[::-1]
    with pytest.raises(TypeError, match="integers and slices"):
        array[np.array([0, 1])]


def test_a_view_refreshed_while_a_chunk_computes_does_not_compute_it_twice(data):
    calls = []
    holder = {}

    def block_fn(block):
        calls.append(1)
        holder["array"][:]  # napari re-slices the layer meanwhile
        return block

    lazy = da.from_array(data, chunks=(1, 50, 70)).map_blocks(
        block_fn, dtype=data.dtype, meta=np.empty((0, 0, 0), data.dtype))
    holder["array"] = array = ProgressiveArray(lazy)
    array[:]
    events = []
    assert drain(iter_fill([array]), events.append) == 3
    assert len(calls) == 3 and [e.total for e in events] == [3, 3, 3]


def test_asarray_reuses_computed_chunks(data):
    calls = []
    lazy = da.from_array(data, chunks=(1, 25, 35)).map_blocks(
        lambda b: (calls.append(1), b)[1], dtype=data.dtype, meta=np.empty((0, 0, 0), data.dtype))
    array = ProgressiveArray(lazy)
    array[0]
    drain(iter_fill([array]))
    assert len(calls) == 4
    np.testing.assert_array_equal(np.asarray(array), data)
    assert len(calls) == 12  # only the 8 chunks not computed before


def test_a_view_larger_than_the_budget_fills_in_part_and_stops(data):
    array = ProgressiveArray(da.from_array(data, chunks=(1, 10, 10)), max_bytes=4 * 10 * 10 * 2)
    for _ in range(5):  # refresh after refresh: what fits is computed once, then nothing
        array[0]
        drain(iter_fill([array]))
    assert array.too_large and array.chunks_done == 4 and array.pending == 0
    shown = array[0]
    assert np.count_nonzero(shown) == 4 * 100  # the four chunks kept are shown
    assert array.astype(np.int32).dtype == np.int32


def test_a_thumbnail_level_read_whole_gives_what_is_computed_without_computing(data):
    calls = []
    lazy = da.from_array(data, chunks=(1, 25, 35)).map_blocks(
        lambda b: calls.append(1) or b, dtype=data.dtype, meta=np.empty((0, 0, 0), data.dtype))
    array = ProgressiveArray(lazy, computes_whole=False)
    assert not np.asarray(array).any() and not calls and not array.pending
    array[0, :25, :35]
    drain(iter_fill([array]))
    whole = np.asarray(array)
    np.testing.assert_array_equal(whole[0, :25, :35], data[0, :25, :35])
    assert not whole[1:].any() and len(calls) == 1
