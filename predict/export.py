"""Export a saved run for deployment: `python -m predict --run RUN.json --export DIR`.

Writes, into DIR (written aside and renamed into place, so a failed export leaves nothing half-made):

    DIR/model.keras     the end-to-end Keras model (classify.endtoend) behind an any-size input
    DIR/saved_model/    a TensorFlow SavedModel (Keras `model.export`) for TF Serving: signature
                        `serving_default`, input a batch of uint8 images (N, H, W, 3) of any size,
                        one output, the class probabilities (N, C)
    DIR/labels.json     the class names in output order
    DIR/export.json     which run this is an export of (its record and run id)

A folder that is not empty is refused: where it holds an export of the same run, --force exports
it again; anything else (another run's export, other files) is never suggested for replacing, and
the message names a free folder beside it instead (--force still replaces it when given).

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

EXPORT_RECORD = "export.json"  # which run a folder is an export of


def check_export_dir(folder: Path, force: bool, run_id: str | None = None) -> None:
    """An export folder must be new or empty, unless --force replaces it; --force is suggested only
    for an export of the same run (`run_id`)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--export {folder} is a file; pass a folder path")
    if not folder.is_dir() or not any(folder.iterdir()) or force:
        return
    try:
        held = json.loads((folder / EXPORT_RECORD).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        held = None
    if held is not None and held == run_id:
        raise UserError(f"--export {folder} already holds an export of this run; pass --force to export it again")
    what = f"an export of another run ({held})" if held else "files that are not an export of this run"
    raise UserError(f"--export {folder} is not empty: it holds {what}; pick a new folder, "
                    f"e.g. --export {free_folder(folder)}")


def free_folder(folder: Path) -> Path:
    """`folder` with the first free "-2", "-3", ... after its name."""
    k = 2
    while folder.with_name(f"{folder.name}-{k}").exists():
        k += 1
    return folder.with_name(f"{folder.name}-{k}")


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
    run_id = run.record.get("run_id")
    check_export_dir(folder, force, run_id)
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
        (tmp / "labels.json").write_text(json.dumps(run.class_names, ensure_ascii=False) + "\n")
        (tmp / EXPORT_RECORD).write_text(json.dumps({"run": str(run.path), "run_id": run_id}) + "\n")
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
    return {"model": folder / "model.keras", "saved_model": folder / "saved_model", "labels": folder / "labels.json"}
