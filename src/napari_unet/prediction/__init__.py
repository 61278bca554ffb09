"""Prediction: the public API (`api`), the one tiled, batched pass (`tiled`) and its plans
(`tiling`), Monte-Carlo dropout maps (`uncertainty`), lazy dask results (`lazy`) shown
as they fill in (`progressive`), whole folders (`folders`) and zarr stores (`to_zarr`).
"""
