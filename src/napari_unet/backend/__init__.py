"""The only backend-specific code: importing Keras safely (`runtime`), devices and
precision (`devices`), the compiled forward pass (`forward`) and data-parallel
training (`parallel`).
"""
