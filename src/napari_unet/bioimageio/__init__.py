"""BioImage Model Zoo packages of napari-unet models (`export`).
"""
