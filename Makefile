# featurecache: `make help` lists the targets. Targets call the CLI; they hold no logic.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# pass-through options: set any of these on the command line, e.g. make features WEIGHTS=none
opt = $(if $($(1)),$(2) "$($(1))")
EXTRACT_OPTS = $(call opt,DATA_DIR,--data-dir) $(call opt,WEIGHTS,--weights) $(call opt,BACKBONE,--backbone) \
	$(call opt,POOLING,--pooling) $(call opt,IMAGE_SIZE,--image-size) $(call opt,LIMIT,--limit) \
	$(call opt,OUT,--out) $(call opt,PRECISION,--precision) $(call opt,BATCH_SIZE,--batch-size) \
	$(call opt,SEED,--seed) $(if $(FORCE),--force) $(EXTRACT_ARGS)
CLASSIFY_OPTS = $(call opt,FEATURES,--features) $(call opt,OUT_DIR,--out-dir) $(call opt,SEED,--seed) \
	$(call opt,TRAIN_SIZE,--train-size) $(CLASSIFY_ARGS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

.PHONY: help install features classify compare learning-curve predict bench bench-augment test clean

## Show this help (default goal)
help:
	@awk '/^## /{doc=substr($$0,4); next} /^[a-zA-Z_-]+:/{if(doc){split($$0,t,":"); printf "  make %-16s %s\n", t[1], doc}; doc=""}' $(MAKEFILE_LIST)

## Create .venv and install the project and its test tools into it
install: $(STAMP)

## Extract features once into features/ (DATA_DIR, WEIGHTS, BACKBONE, POOLING, IMAGE_SIZE, LIMIT, OUT, PRECISION, BATCH_SIZE, SEED, FORCE=1, AUGMENT=flip,crop VIEWS=4)
features: $(STAMP)
	$(BIN)/python -m extract $(EXTRACT_OPTS) $(call opt,AUGMENT,--augment) $(call opt,VIEWS,--views)

## Train one classifier on the cache: MODEL=lr|rf|mlp (FEATURES, OUT_DIR, SEED, TRAIN_SIZE, CLASSIFY_ARGS="--C auto")
classify: $(STAMP)
	$(BIN)/python -m classify --model $(or $(MODEL),lr) $(CLASSIFY_OPTS)

## Train lr, rf and mlp on the same cache and write a comparison table and chart
compare: $(STAMP)
	$(BIN)/python -m classify.compare $(CLASSIFY_OPTS)

## Test accuracy against training-set size: MODEL=lr|rf|mlp
learning-curve: $(STAMP)
	$(BIN)/python -m classify.learning_curve --model $(or $(MODEL),lr) $(CLASSIFY_OPTS)

## Predict the class of new images with a saved run: RUN=reports/<run>.json IMAGES="a.jpg folder/"
predict: $(STAMP)
	$(BIN)/python -m predict --run "$(RUN)" $(IMAGES)

## Benchmark: seed-style VGG16 vs this project, side by side, on ../shared/data (writes reports/bench/)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## Augmentation benchmark: extraction time for K = 0, 2, 4 views and accuracy with views and TTA (writes reports/bench/)
bench-augment: $(STAMP)
	$(BIN)/python -m bench.augment $(BENCH_AUGMENT_ARGS)

## Run the test suite
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Remove the virtual environment (caches in features/ and reports/ are kept)
clean:
	rm -rf $(VENV) *.egg-info
