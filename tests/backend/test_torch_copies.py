"""PyTorch's host <-> device copies for the forward pass (the CPU side; the pinned,
non-blocking GPU side needs a CUDA device and is measured by benchmarks/bench_devices.py)."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_unet.backend.torch_copies import HostCopy, TorchCopies  # noqa: E402

CPU = TorchCopies(torch.device("cpu"))


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_an_upload_on_the_cpu_shares_the_array_and_keeps_its_dtype(dtype):
    array = np.arange(24, dtype=dtype).reshape(2, 3, 4)
    tensor = CPU.to_device(array)
    assert tensor.device.type == "cpu" and tuple(tensor.shape) == (2, 3, 4)
    assert tensor.numpy().dtype == dtype
    assert np.shares_memory(tensor.numpy(), array)


def test_a_read_only_or_strided_array_is_copied_without_a_warning_and_left_alone():
    array = np.arange(24, dtype=np.float32).reshape(4, 6)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = CPU.to_device(array)
        strided = CPU.to_device(np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2])
    tensor += 1  # a tensor that shared the read-only array would change it
    np.testing.assert_array_equal(array, np.arange(24).reshape(4, 6))
    np.testing.assert_array_equal(strided.numpy(), np.arange(24).reshape(4, 6)[:, ::2])


def test_a_cpu_result_comes_back_as_itself_with_nothing_to_wait_for():
    result = torch.arange(6, dtype=torch.bfloat16)
    copy = CPU.to_host(result)
    assert copy == HostCopy(result, None)
    assert CPU.wait(copy) is result
