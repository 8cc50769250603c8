"""Export a saved run for deployment: `featurecache export --run RUN.json --out DIR`.

Writes, into DIR (written aside and renamed into place, so a failed export leaves nothing half-made):

    DIR/model.keras     the end-to-end Keras model (classify.pixel.endtoend) behind an any-size input
    DIR/saved_model/    a TensorFlow SavedModel (Keras `model.export`) for TF Serving: signature
                        `serving_default`, input a batch of uint8 images (N, H, W, 3) of any size,
                        one output, the class probabilities (N, C)
    DIR/labels.json     the class names in output order
    DIR/model.xml, DIR/model.bin   the end-to-end model as OpenVINO IR (float32 weights) for CPU serving with
                        OpenVINO alone: input uint8 (N, s, s, 3) already at the cache's input size s (OpenVINO
                        does not convert the antialiased any-size resize); written when `openvino` is installed
    DIR/export.json     which run this is an export of (its record and run id)

A folder that is not empty is refused: where it holds an export of the same run, the message
suggests --force; for another run's export or other files it names a free folder beside it instead.

`--force` replaces an earlier export: it is allowed only when every entry of DIR is one of the export's
own names (EXPORT_FILES), and then replaces those names one by one. A folder holding anything else (a
reports or features folder, a home folder) is refused with one line, `--force` or not: nothing else there
is ever moved or removed.

Inside the model, images are resized (bilinear, antialiased, as Pillow's resize in predict) to
the size the cache's extraction read, rounded to whole pixel values, then go through the cache's
backbone graph in its precision and the run's head. docs/deployment.md shows how to serve it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from featurecache.errors import SettingError, UserError

EXPORT_RECORD = "export.json"  # which run a folder is an export of

# what an export writes into its folder, and all that `--force` may replace there; a format added to
# the export (an OpenVINO model.xml and model.bin, say) adds its names here
EXPORT_FILES = ("model.keras", "saved_model", "labels.json", "model.xml", "model.bin", EXPORT_RECORD)


def export_folder(folder: Path | str) -> Path:
    """The export folder as an absolute path with a name (`.` is the working folder; `/` is refused)."""
    folder = Path(folder).resolve()
    if not folder.name:
        raise SettingError(f"folder={str(folder)!r} has no folder name; pass a folder such as exports/my-run")
    return folder


def check_export_dir(folder: Path, force: bool, run_id: str | None = None) -> None:
    """An export folder must be new or empty; --force replaces an earlier export, never anything else,
    and is suggested only for an export of the same run (`run_id`)."""
    if folder.exists() and not folder.is_dir():
        raise SettingError(f"folder={str(folder)!r} is a file; pass a folder path")
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    others = [name for name in entries if name not in EXPORT_FILES]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise SettingError(f"folder={str(folder)!r} holds files that are not an export's ({shown}); force=True replaces only "
                        f"an earlier export ({', '.join(EXPORT_FILES)}): pick a new or empty folder, "
                        f"e.g. folder={str(free_folder(folder))!r}")
    if not entries or force:
        return
    try:
        held = json.loads((folder / EXPORT_RECORD).read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        held = None
    if held is not None and held == run_id:
        raise SettingError(f"folder={str(folder)!r} already holds an export of this run; pass force=True to export it again")
    what = f"an export of another run ({held})" if held else "an earlier export"
    raise SettingError(f"folder={str(folder)!r} holds {what}; pick a new folder, e.g. folder={str(free_folder(folder))!r}")


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
    from classify.pixel import endtoend
    from classify.training.specs import spec_for_format
    from featurecache.files import room_error, signals_held, temp_name

    folder = export_folder(folder)
    run_id = run.record.run_id
    check_export_dir(folder, force, run_id)
    spec = spec_for_format(run.record.model_format)
    refusal = spec.refusal(run.path.name, run.record.chosen) if spec else None
    if refusal:   # the model's spec says why it has no export (a forest: no Keras form; kNN: its training set)
        raise UserError(refusal)
    e2e = endtoend.build(run, allow_weights_mismatch)
    model = serving_model(e2e)
    tmp = temp_name(folder)
    try:
        tmp.mkdir(parents=True)
        model.save(tmp / "model.keras")
        model.export(str(tmp / "saved_model"), format="tf_saved_model", verbose=False)
        write_openvino_ir(e2e.model, tmp)
        (tmp / "labels.json").write_text(json.dumps(run.class_names, ensure_ascii=False) + "\n")
        (tmp / EXPORT_RECORD).write_text(json.dumps({"run": str(run.path), "run_id": run_id}) + "\n")
        with signals_held():   # Ctrl-C never leaves half the files swapped
            place(tmp, folder)
    except OSError as e:
        raise room_error(e, folder.parent) from None
    finally:  # a bug or Ctrl-C too: nothing half-written stays behind
        shutil.rmtree(tmp, ignore_errors=True)
    written = {"model": folder / "model.keras", "saved_model": folder / "saved_model", "labels": folder / "labels.json"}
    if (folder / "model.xml").is_file():
        written["openvino"] = folder / "model.xml"
    return written


def place(new: Path, folder: Path) -> None:
    """Move the export written in `new` into `folder`: a new folder is one rename; in an earlier export's
    folder each of EXPORT_FILES is swapped for the new one, and nothing else there is touched."""
    if not folder.exists():
        os.replace(new, folder)
        return
    old = new / ".replaced"
    old.mkdir()
    for name in EXPORT_FILES:
        if (folder / name).exists() or (folder / name).is_symlink():
            os.replace(folder / name, old / name)
        if (new / name).exists():
            os.replace(new / name, folder / name)


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
