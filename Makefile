# Shortcuts; each target runs the script a new user would run.
.PHONY: serve test models experiment bench

serve:   ## install the service and run it on models/
	bash scripts/serve.sh

test:    ## install everything and run the test suite
	bash scripts/test.sh

models:  ## synthetic data -> teacher -> PKDOT student -> ONNX folders in models/
	bash scripts/make-models.sh

experiment:  ## the comparison table on the synthetic datasets (docs/experiments.md)
	bash scripts/experiment.sh
