"""The model's own process, for the napari widgets: the operations on its model
(`protocol`), the viewer's side (`client`) and the engine's (`server`).
"""
