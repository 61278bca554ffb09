"""An existing ``dask.distributed`` cluster for folder prediction: the files of a folder
run as tasks on its workers (the model sent once as its ``.keras`` bytes,
`napari_unet.prediction.lazy.ModelHandle`), the blocks of zarr inputs as its dask tasks.

Workers read the inputs and write the outputs themselves, so they must see the same
folders (a shared file system) and have napari-unet installed.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

__all__ = ["Cluster", "CONNECT_TIMEOUT"]

CONNECT_TIMEOUT = 30.0  # seconds to wait for a scheduler


class Cluster:
    """A client of the scheduler at ``address`` (``tcp://host:8786``), closed with the
    ``with`` block; `submit` runs a function on a worker, `completed` yields the results
    in the order they finish, `scheduler` is what ``dask.compute`` takes to run there.
    ``timeout``: seconds to wait for the scheduler before ``ValueError`` (None:
    `CONNECT_TIMEOUT`)."""

    def __init__(self, address: str, timeout: float | None = None):
        try:
            from distributed import Client
        except ImportError:
            raise ValueError("--scheduler needs the distributed package: pip install "
                             "distributed") from None
        try:
            self.client = Client(address, set_as_default=False, timeout=f"{timeout or CONNECT_TIMEOUT}s")
        except (OSError, TimeoutError) as err:
            raise ValueError(f"Could not reach the dask scheduler at {address!r} ({err}); "
                             "check the address (e.g. tcp://host:8786) and that it runs.") from err
        self._futures: list[Any] = []

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.close()

    @property
    def scheduler(self) -> Any:
        """For ``dask.config.set(scheduler=...)``: dask graphs computed on the cluster."""
        return self.client

    def scatter(self, value: Any) -> Any:
        """``value`` sent to every worker once (a future the tasks take instead of it)."""
        return self.client.scatter(value, broadcast=True)

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on a worker (each call its own task, never cached)."""
        self._futures.append(self.client.submit(function, *args, pure=False))

    def completed(self) -> Iterator[Any]:
        """The results of the submitted calls as they finish (a call that raised raises)."""
        from distributed import as_completed

        futures, self._futures = self._futures, []
        for future in as_completed(futures, loop=self.client.loop):
            yield future.result()
