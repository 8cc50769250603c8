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
	$(call opt,SEED,--seed) $(call opt,TEST_FRACTION,--test-fraction) $(call opt,STORE_DTYPE,--store-dtype) \
	$(call opt,CHECKPOINT_EVERY,--checkpoint-every) $(call opt,FEATURE_LAYER,--feature-layer) \
	$(call opt,ENGINE,--engine) $(call opt,WORKERS,--workers) $(call opt,SHARD,--shard) \
	$(if $(FORCE),--force) $(if $(NO_WAIT),--no-wait) $(if $(VERIFY),--verify) $(EXTRACT_ARGS)
CLASSIFY_OPTS = $(call opt,FEATURES,--features) $(call opt,OUT_DIR,--out-dir) $(call opt,SEED,--seed) \
	$(call opt,TRAIN_SIZE,--train-size) $(CLASSIFY_ARGS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,tracking,distributed,runtime]'
	touch $@

.PHONY: help install features classify compare learning-curve predict bench bench-runtime bench-accuracy bench-augment bench-decode test clean robustness export

## Show this help (default goal)
help:
	@awk '/^## /{doc=substr($$0,4); next} /^[a-zA-Z_-]+:/{if(doc){split($$0,t,":"); printf "  make %-16s %s\n", t[1], doc}; doc=""}' $(MAKEFILE_LIST)

## Create .venv and install the project and its test tools into it
install: $(STAMP)

## Extract features once into features/ (DATA_DIR, BACKBONE=name|model.keras, FEATURE_LAYER, WEIGHTS, POOLING, IMAGE_SIZE, LIMIT, OUT, PRECISION, BATCH_SIZE, SEED, TEST_FRACTION, STORE_DTYPE, CHECKPOINT_EVERY, FORCE=1, NO_WAIT=1, VERIFY=1, ENGINE=ray WORKERS=N, SHARD=i/N, AUGMENT=flip,crop VIEWS=4)
features: $(STAMP)
	$(BIN)/python -m extract $(EXTRACT_OPTS) $(call opt,AUGMENT,--augment) $(call opt,VIEWS,--views)

## Merge the shard files of SHARD=i/N runs into one cache: OUT=features/x.h5 SHARDS="features/x.shard-*-of-4.h5"
merge: $(STAMP)
	$(BIN)/python -m extract merge $(call opt,OUT,--out) $(SHARDS)

## The robust model against a baseline (docs/robustness.md): extracts ROBUST_FEATURES (Lite0 at IMAGE_SIZE 32 px, views color,rotate,flip) from DATA_DIR, then trains and attacks both (OUT_DIR, ROBUST_ARGS="--limit 200 --seeds 3")
ROBUST_BACKBONE ?= ../shared/models/efficientnet_lite0_imagenet_notop.keras
ROBUST_FEATURES ?= features/robust-lite0-$(or $(IMAGE_SIZE),32)px-views.h5
.PHONY: robust-model
robust-model: $(STAMP)
	$(BIN)/python -m extract $(call opt,DATA_DIR,--data-dir) --backbone "$(ROBUST_BACKBONE)" --image-size $(or $(IMAGE_SIZE),32) --precision float32 --augment color,rotate,flip --views 4 --out "$(ROBUST_FEATURES)"
	$(BIN)/python -m featurecache robust-model --features "$(ROBUST_FEATURES)" $(call opt,OUT_DIR,--out-dir) $(ROBUST_ARGS)

## Train one classifier on the cache: MODEL=lr|rf|mlp|knn (FEATURES, OUT_DIR, SEED, TRAIN_SIZE, CLASSIFY_ARGS="--C auto")
classify: $(STAMP)
	$(BIN)/python -m classify --model $(or $(MODEL),lr) $(CLASSIFY_OPTS)

## Train lr, rf and mlp on the same cache and write a comparison table and chart
compare: $(STAMP)
	$(BIN)/python -m featurecache compare $(CLASSIFY_OPTS)

## Test accuracy against training-set size: MODEL=lr|rf|mlp
learning-curve: $(STAMP)
	$(BIN)/python -m featurecache learning-curve --model $(or $(MODEL),lr) $(CLASSIFY_OPTS)

## Few-shot test accuracy: SHOTS per class (default 1,5,10,20) drawn from the train split, SEEDS draws (default 5), MODEL=lr|knn|mlp (FEATURES, OUT_DIR, FEWSHOT_ARGS)
.PHONY: fewshot
fewshot: $(STAMP)
	$(BIN)/python -m featurecache fewshot $(call opt,FEATURES,--features) $(call opt,OUT_DIR,--out-dir) $(call opt,SHOTS,--shots) $(call opt,SEEDS,--seeds) $(call opt,MODEL,--model) $(FEWSHOT_ARGS)

## Active learning: which training images to label next, per strategy: MODEL=lr|rf|mlp (FEATURES, OUT_DIR, SEED, ACTIVE_ARGS="--strategy entropy --budget 1500")
.PHONY: active-learning
active-learning: $(STAMP)
	$(BIN)/python -m featurecache active --model $(or $(MODEL),lr) $(call opt,FEATURES,--features) $(call opt,OUT_DIR,--out-dir) $(call opt,SEED,--seed) $(ACTIVE_ARGS)

## Audit a cache: near-duplicates and train/test leaks, likely label errors, outliers (FEATURES, OUT_DIR, AUDIT_ARGS="--threshold 0.9")
.PHONY: audit
audit: $(STAMP)
	$(BIN)/python -m featurecache audit $(call opt,FEATURES,--features) $(call opt,OUT_DIR,--out-dir) $(AUDIT_ARGS)

## Rebuild OUT_DIR/index.html (default reports/): every run's table, curves, confusion matrix, gallery, report
report: $(STAMP)
	$(BIN)/python -m featurecache report $(call opt,OUT_DIR,--out-dir)

## Predict the class of new images with a saved run: RUN=reports/<run>-run.json or RUN=best (FEATURES=cache, OUT_DIR=reports) IMAGES="photo or folder"
predict: $(STAMP)
	$(BIN)/python -m featurecache predict $(call opt,RUN,--run) $(if $(filter best,$(RUN)),$(call opt,OUT_DIR,--reports) $(call opt,FEATURES,--features)) $(if $(IMAGES),"$(IMAGES)") $(PREDICT_ARGS)

## Accuracy of a saved run under attack: RUN=reports/<run>-run.json (ROBUSTNESS_ARGS="--attack fgsm --attack pgd --limit 1000")
robustness: $(STAMP)
	$(BIN)/python -m featurecache robustness $(call opt,RUN,--run) $(ROBUSTNESS_ARGS)

## Export a saved run for deployment: RUN=reports/<run>-run.json EXPORT_DIR=export/ (model.keras, saved_model/, labels.json)
export: $(STAMP)
	$(BIN)/python -m featurecache export $(call opt,RUN,--run) $(call opt,EXPORT_DIR,--out) $(if $(FORCE),--force)

## Benchmark: the classic way (a frozen VGG16 and its head trained end to end, the backbone re-run every epoch) vs this project, side by side, on ../shared/data (writes reports/bench/); SCALE=full: 60,000 synthetic images (reports/bench-full/)
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(SCALE),--scale "$(SCALE)") $(BENCH_ARGS)

## The real path: plain Keras predict vs extract (float32, bfloat16) as whole processes at 224 px: Lite0 file, ResNet50, VGG16 (writes reports/bench-runtime/)
bench-runtime: $(STAMP)
	$(BIN)/python -m bench.runtime $(BENCH_RUNTIME_ARGS)

## Accuracy with the real ImageNet-trained EfficientNet-Lite0 in ../shared/models: LR, MLP, RF on CIFAR-10 at 224 px and cats-vs-dogs
bench-accuracy: $(STAMP)
	$(BIN)/python -m bench.accuracy $(BENCH_ARGS)

## Loader-only benchmark: photos decoded at 224 px with 1 and with every decode worker (prints a table)
bench-decode: $(STAMP)
	$(BIN)/python -m bench.decode $(BENCH_DECODE_ARGS)

## Augmentation benchmark: extraction time for K = 0, 2, 4 views and accuracy with views and TTA (writes reports/bench/)
bench-augment: $(STAMP)
	$(BIN)/python -m bench.augment $(BENCH_AUGMENT_ARGS)

## Run the test suite in 2 processes (TEST_WORKERS=N to change, PYTEST_ARGS for pytest options)
test: $(STAMP)
	$(BIN)/python -m pytest -n $(or $(TEST_WORKERS),2) $(PYTEST_ARGS)

## Remove the virtual environment (caches in features/ and reports/ are kept)
clean:
	rm -rf $(VENV) *.egg-info
