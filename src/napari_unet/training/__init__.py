"""Training: the job (`job`) and what a front end asks of it (`request`, `settings`); the
network to train (`network`), the data (`data`), held-out validation and patches
(`sampling`, `augmentation`), the masked losses (`losses`), Keras' fit loop
(`fit_loop`), the live preview (`preview`), provenance (`provenance`), the label
settings chosen after training (`calibration`) and a console progress line (`console`).
"""
