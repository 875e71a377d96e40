"""The `pkdot` command line: one entry point over training, the service and the benchmarks (`pkdot --help`).

`pkdot.cli` is the only module that imports both `training` and `service`; they never import each other (what they
share is `pkdot_contract`). `python -m pkdot` is the same as the `pkdot` console script.
"""
