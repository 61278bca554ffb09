"""Files: images (`images`), outputs checked before any work and written atomically
(`outputs`) and zarr stores (`zarr`).
"""
