"""Default cache names: one part per setting that changes the features, none at the defaults."""

from __future__ import annotations

from extract.naming import IN_STEM, NAME_PARTS, default_name
from featurecache.cache import IDENTITY_ATTRS

PLAIN = {"backbone": "vgg16", "pooling": "gap", "image_size": 32, "weights": "imagenet", "weights_sha256": "",
         "backbone_sha256": "", "feature_layer": "", "seed": 0, "precision": "float32", "precision_runtime": "", "limit": -1,
         "test_fraction": -1.0, "store_dtype": "float32", "augment": "", "views": 0, "rotate_degrees": 0.0,
         "test_views": 0}


def test_every_identity_setting_has_a_place_in_the_name():
    assert set(IDENTITY_ATTRS) == set(NAME_PARTS) | set(IN_STEM)
    assert set(PLAIN) | {"data_fingerprint"} == set(IDENTITY_ATTRS)


def test_defaults_give_the_plain_name_and_each_setting_its_own_part():
    assert default_name("cifar10", PLAIN) == "cifar10-vgg16-gap-32px.h5"
    changes = {"weights": "none", "precision": "bfloat16", "store_dtype": "float16", "seed": 3, "limit": 500,
               "test_fraction": 0.3, "feature_layer": "block4_pool", "augment": "flip,crop", "views": 4,
               "test_views": 2, "backbone_sha256": "ab" * 32, "precision_runtime": "openvino"}
    names = {default_name("cifar10", {**PLAIN, key: value}) for key, value in changes.items()}
    assert len(names) == len(changes) and default_name("cifar10", PLAIN) not in names
    assert default_name("cifar10", {**PLAIN, "weights": "w.h5", "weights_sha256": "cd" * 32}) \
        == "cifar10-vgg16-gap-32px-weightscdcdcdcd.h5"
    rotated = {**PLAIN, "augment": "rotate", "views": 2}
    assert default_name("cifar10", {**rotated, "rotate_degrees": 15.0}) == "cifar10-vgg16-gap-32px-aug-rotate-2views.h5"
    assert default_name("cifar10", {**rotated, "rotate_degrees": 30.0}).endswith("-2views-rot30.h5")


def test_a_run_name_changes_with_every_setting_that_applies_to_its_model(tiny_cache):
    """Every ClassifyConfig field is either in the run's digest (for the models it applies to) or
    only names or places files."""

    from classify.training.config import ClassifyConfig
    from classify.training.specs import MODEL_PARAMS
    from classify.runs.outputs import run_id
    from featurecache.cache import read_cache

    cache = read_cache(tiny_cache)
    not_identity = {"model", "features", "out_dir", "plot_name", "report_name", "tensorboard"}
    other = {"seed": 1, "val_fraction": 0.2, "train_size": 50, "C": 1.0, "max_iter": 10, "n_estimators": 7,
             "max_depth": 3, "max_samples": 0.5, "hidden": (8,), "dropout": 0.1, "epochs": 3, "batch_size": 8,
             "learning_rate": 0.5, "decay_steps": 7, "decay_rate": 0.5, "optimizer": "sgd", "momentum": 0.5,
             "patience": 2, "k": 20, "temperature": 0.5, "calibrate": True, "exclude": "a.json:duplicates",
             "views": "none", "tta": True,
             "max_memory": 10**9, "adversarial": "pgd"}
    # the adversarial attack's own settings count only where adversarial training is on
    with_adversarial = {"adv_eps": 4.0, "adv_steps": 3, "adv_ratio": 0.25, "adv_every": 2}
    assert ClassifyConfig.setting_names() == set(other) | set(with_adversarial) | not_identity
    owned = {k for params in MODEL_PARAMS.values() for k in params}
    for model in MODEL_PARAMS:
        base = run_id(cache, ClassifyConfig(model=model))
        for key, value in other.items():
            changed = run_id(cache, ClassifyConfig(model=model, **{key: value})) != base
            assert changed == (key not in owned or key in MODEL_PARAMS[model]), (model, key)
        adversarial = run_id(cache, ClassifyConfig(model=model, adversarial="pgd"))
        for key, value in with_adversarial.items():
            assert run_id(cache, ClassifyConfig(model=model, **{key: value})) == base, (model, key)
            assert run_id(cache, ClassifyConfig(model=model, adversarial="pgd", **{key: value})) != adversarial, (model, key)
