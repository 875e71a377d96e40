"""PKDOT training: datasets, synthetic data, models, losses, distillation, metrics and export (PyTorch).

Importing this package never imports torch; the modules that need it import it themselves.
"""
