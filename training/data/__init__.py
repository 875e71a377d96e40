"""Datasets in their real release layouts (BioVid Heat Pain Part A, Aff-Wild2), splits, synthetic data, face caches."""
