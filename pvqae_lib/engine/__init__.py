"""The engine: one way to train a detector, one way to score it, and the metrics (image / pixel AUROC,
PRO). It imports the maths (``nn``) and the data; it knows nothing of run folders or the command line."""
