"""`pkdot` training subcommands: train-teacher, train-tnet, distill, evaluate, experiment. No torch at import."""
