"""Export a saved run for deployment: `python -m predict --run RUN.json --export DIR`.

Writes, into DIR (written aside and renamed into place, so a failed export leaves nothing half-made):

    DIR/model.keras     the end-to-end Keras model (classify.endtoend) behind an any-size input
    DIR/saved_model/    a TensorFlow SavedModel (Keras `model.export`) for TF Serving: signature
                        `serving_default`, input a batch of uint8 images (N, H, W, 3) of any size,
                        one output, the class probabilities (N, C)
    DIR/labels.json     the class names in output order
    DIR/model.xml, DIR/model.bin   the end-to-end model as OpenVINO IR (float32 weights) for CPU serving with
                        OpenVINO alone: input uint8 (N, s, s, 3) already at the cache's input size s (OpenVINO
                        does not convert the antialiased any-size resize); written when `openvino` is installed

Inside the model, images are resized (bilinear, antialiased, as Pillow's resize in predict) to
the size the cache's extraction read, rounded to whole pixel values, then go through the cache's
backbone graph in its precision and the run's head. docs/deployment.md shows how to serve it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from featurecache.errors import UserError


def check_export_dir(folder: Path, force: bool) -> None:
    """An export folder must be new or empty, unless --force replaces it."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--export {folder} is a file; pass a folder path")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UserError(f"--export {folder} exists and is not empty; pick a new folder or pass --force to replace it")


def serving_model(e2e):
    """uint8 (N, H, W, 3) of any size -> (N, C) probabilities: resize to the input size inside, then `e2e.model`."""
    from featurecache.tfimport import keras

    k = keras()
    s = e2e.input_size
    images = k.Input((None, None, 3), dtype="uint8", name="images")
    x = k.ops.cast(images, "float32")
    x = k.layers.Resizing(s, s, interpolation="bilinear", antialias=True, name="resize_to_input")(x)
    x = k.ops.cast(k.ops.clip(k.ops.round(x), 0, 255), "uint8")   # whole pixel values, as a decoded image has
    return k.Model(images, e2e.model(x), name="featurecache_serving")


def export_run(run, folder: Path, force: bool = False, allow_weights_mismatch: bool = False) -> dict[str, Path]:
    """Write model.keras, saved_model/ and labels.json for `run` into `folder`; returns their paths."""
    from classify import endtoend
    from featurecache.files import room_error, temp_name

    folder = Path(folder)
    check_export_dir(folder, force)
    e2e = endtoend.build(run, allow_weights_mismatch)
    if e2e.model is None:
        raise UserError(f"{run.path.name} is a random-forest run, which has no Keras form to export; "
                        "export an lr or mlp run of the same cache")
    model = serving_model(e2e)
    tmp = temp_name(folder)
    try:
        tmp.mkdir(parents=True)
        model.save(tmp / "model.keras")
        model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        write_openvino_ir(e2e.model, tmp)
        (tmp / "labels.json").write_text(json.dumps(run.class_names, ensure_ascii=False) + "\n")
        if folder.exists():
            old = temp_name(folder.with_name(folder.name + ".old"))
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise room_error(e, folder.parent) from None
    except BaseException:  # a bug or Ctrl-C: nothing half-written stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    written = {"model": folder / "model.keras", "saved_model": folder / "saved_model", "labels": folder / "labels.json"}
    if (folder / "model.xml").is_file():
        written["openvino"] = folder / "model.xml"
    return written


def write_openvino_ir(model, folder: Path) -> None:
    """The end-to-end model as OpenVINO IR (folder/model.xml and model.bin, weights kept in float32); nothing
    without the optional `openvino` package or when OpenVINO cannot convert the graph."""
    from featurecache.runtime import openvino_module, quiet_convert

    ov = openvino_module()
    if ov is None:
        return
    try:
        converted = quiet_convert(model)
    except Exception:  # noqa: BLE001 - a graph OpenVINO cannot convert leaves the other formats to serve
        return
    ov.save_model(converted, str(folder / "model.xml"), compress_to_fp16=False)
