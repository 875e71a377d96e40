"""Reproducible speed, scale and memory measurements of the models and the service (`pkdot bench`)."""
