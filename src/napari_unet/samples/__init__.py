"""Synthetic images with ground truth, made on the spot (no downloads): `nuclei`.
"""
