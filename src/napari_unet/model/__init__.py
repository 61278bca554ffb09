"""What a model is: its architecture (`config`), the Keras network (`network`), what it
costs (`costs`), how images are normalised (`normalization`), how probabilities become
labels (`decoding`), the Keras-free record of a model (`summary`), the network with its
record (`unet`) and model files (`files`, `file_format`).
"""
