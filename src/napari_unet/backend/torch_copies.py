"""PyTorch's copies between the host and the device for `napari_unet.backend.forward.Forward`.

A plain ``torch.as_tensor(array, device="cuda")`` copies from pageable memory and then
waits for the whole CUDA stream, so each batch's upload would wait for the batches
already queued and no batch would ever be in flight; ``tensor.cpu()`` likewise waits.
Here a batch goes up through page-locked ("pinned") host memory without waiting, and
its result comes back into pinned memory without waiting, with an event to wait on when
it is fetched. PyTorch's caching host allocator keeps each pinned block until the copies
queued on it are done, so blocks are neither freed nor reused too early. On the CPU both
directions share memory with the numpy arrays (nothing is copied); another device (Apple's
MPS) gets plain copies.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["HostCopy", "TorchCopies"]


class HostCopy(NamedTuple):
    """A result on its way to the host: ``tensor`` (pinned host memory being filled, or the
    CPU result itself) and ``done`` (the CUDA event after its copy; None on the CPU)."""

    tensor: Any
    done: Any = None


class TorchCopies:
    """Uploads and downloads for one device (``torch.device``)."""

    def __init__(self, device: Any):
        self.device = device
        self.cuda = device.type == "cuda"

    def to_device(self, array: np.ndarray) -> Any:
        """``array`` (any shape; a dtype torch has) as a tensor on the device; on a GPU the
        copy is queued and this returns at once."""
        import torch

        array = np.asarray(array)
        if not self.cuda:  # shared; a read-only array is copied (torch would warn, and write)
            copy = None if array.flags.writeable else True
            return torch.from_numpy(np.array(array, order="C", copy=copy)).to(self.device)
        dtype = torch.from_numpy(np.empty(0, array.dtype)).dtype
        pinned = torch.empty(array.shape, dtype=dtype, pin_memory=True)
        pinned.numpy()[...] = array
        return pinned.to(self.device, non_blocking=True)

    def to_host(self, tensor: Any) -> HostCopy:
        """Queue the copy of the device ``tensor`` into pinned host memory; returns at once."""
        import torch

        if not tensor.is_cuda:
            return HostCopy(tensor)
        pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        pinned.copy_(tensor, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return HostCopy(pinned, done)

    @staticmethod
    def wait(copy: HostCopy) -> Any:
        """The host tensor of ``copy`` once its copy is done (a CPU tensor: convert it with
        ``keras.ops.convert_to_numpy``, which also handles bfloat16)."""
        if copy.done is not None:
            copy.done.synchronize()
        return copy.tensor
