"""What a medigan model makes and takes, as a record says it: its outputs (an image, or an
image and a mask), generate() arguments that point into its own package, the array input
of a translator, and the medigan fields a record does not keep (issue 12). Used by
:mod:`synthmed.registry.authoring.medigan_import`.
"""

from __future__ import annotations

import json
import re
from typing import Any, Mapping

from .medigan_fields import strings
from ..formats.medigan1 import PACKAGE_PLACEHOLDER


#: medigan's functions/generates wording of a model that makes a mask with each image
_MASK_WORDS = ("noise to image and mask", "segmentation mask", "binary mask", "tumor grade mask")


def makes_masks(original_id: str, selection: Mapping[str, Any], comment: str) -> bool:
    """Whether a medigan entry's samples are image + mask: ``W_MASKS`` in its id, or its
    ``function``/``generates`` name masks it makes."""
    words = " | ".join(x.lower() for x in strings(selection.get("function")) + strings(selection.get("generates")))
    return "W_MASK" in original_id.upper() or any(w in words for w in _MASK_WORDS)


def medigan_outputs(original_id: str, selection: Mapping[str, Any], size: list[int], comment: str,
                    notes: list[str]) -> list[dict[str, Any]]:
    """The record's outputs: one ``image``, or for an image+mask model an ``image`` and a
    ``mask`` (kind mask) as separate named outputs. A 4-channel medigan sample is taken as
    an RGB image with its mask in channel 4 (synthmed's runner splits one array whose channels
    are the outputs' channels in record order); a tuple sample gives its arrays in order."""
    channels = size[2] if len(size) >= 3 and size[2] <= 4 else 1
    hw = size[:2]
    if not makes_masks(original_id, selection, comment):
        return [{"name": "image", "kind": "image", "dims": 2, "shape": hw + ([channels] if channels > 1 else []),
                 "dtype": "uint8", "channels": channels, "value_range": [0, 255]}]
    image_channels = 3 if channels == 4 else channels
    mask_channels = 3 if "3-channel segmentation mask" in comment.lower() else 1
    notes.append(f"image+mask model: outputs 'image' ({image_channels} channel(s)) and 'mask' "
                 f"({mask_channels} channel(s))" + (", split from medigan's 4-channel sample (mask in channel 4)"
                                                    if channels == 4 else ", from medigan's (image, mask) tuples"))
    return [
        {"name": "image", "kind": "image", "dims": 2, "shape": hw + ([image_channels] if image_channels > 1 else []),
         "dtype": "uint8", "channels": image_channels, "value_range": [0, 255]},
        {"name": "mask", "kind": "mask", "dims": 2, "shape": hw + ([mask_channels] if mask_channels > 1 else []),
         "dtype": "uint8", "channels": mask_channels, "value_range": [0, 255]},
    ]




def package_relative_args(original_id: str, custom: Mapping[str, Any], notes: list[str]) -> dict[str, Any]:
    """Default arguments that point into medigan's own copy of the package
    (``models/<id>/...``) become ``{package}/...``: the runner resolves them inside the
    verified package folder, so they work without the user passing an internal path."""
    prefix = f"models/{original_id}/"
    out: dict[str, Any] = {}
    for key, value in custom.items():
        if isinstance(value, str) and value.replace("\\", "/").lower().startswith(prefix.lower()):
            rest = value.replace("\\", "/")[len(prefix):]
            out[key] = f"{PACKAGE_PLACEHOLDER}/{rest}"
            notes.append(f"generate argument {key}={value!r} is inside medigan's package folder: "
                         f"recorded as {out[key]!r}, resolved inside the verified package")
        else:
            out[key] = value
    return out


#: medigan fields a record keeps (mapped onto its own fields), by section
_KEPT = {
    "execution": {"package_name", "package_link", "model_name", "extension", "image_size", "dependencies",
                  "generate_method"},
    "selection": {"performance", "use_cases", "organ", "modality", "dataset", "augmentations", "generates",
                  "height", "width", "type", "license", "dataset_type", "privacy_preservation", "tags",
                  "function", "depth"},
    "description": {"title", "version", "doi", "publication", "inputs", "comment", "trained_date"},
}


def dropped_notes(entry: Mapping[str, Any]) -> list[str]:
    """An import note for every medigan field with a value that the record does not keep."""
    notes = []
    for section, kept in _KEPT.items():
        block = entry.get(section)
        if not isinstance(block, Mapping):
            continue
        for key, value in block.items():
            if key in kept or value in (None, "", [], {}):
                continue
            notes.append(f"{section}.{key}={json.dumps(value, ensure_ascii=False)[:200]} is not kept "
                         "(synthmed's record has no field for it)")
    gm = (entry.get("execution") or {}).get("generate_method")
    if isinstance(gm, Mapping):
        for key, value in gm.items():
            if key not in ("name", "args") and value not in (None, "", [], {}):
                notes.append(f"execution.generate_method.{key}={json.dumps(value)[:200]} is not kept")
    return notes


# --- translators: input folders as array inputs ---------------------------------------

#: medigan's generate() arguments that name a folder of images to translate
FOLDER_ARGS = ("input_path",)
#: a translator rescales what it reads, so its inputs may be any size up to this
TRANSLATOR_MAX_SIDE = 16384


def map_translator_inputs(record: dict[str, Any], notes: list[str]) -> None:
    """A translator (task image-to-image, mask-to-image or inpainting) whose generate()
    takes a folder (``input_path``) gets an array input instead of a string parameter:
    named ``mask`` (kind mask) when the catalogue's help for it speaks of masks, else
    ``image``; 2D, uint8, the
    channels of its output, any size (medigan's translators rescale to ``image_size``).
    The runner then writes input i into a folder of its own and passes that folder as
    the argument (:func:`synthmed.registry.formats.medigan1.stage_input`). The folder
    default inside medigan's own tree is dropped from the parameters and generate_args.
    Changes ``record`` in place; a note says what was done."""
    if record.get("task") not in ("image-to-image", "mask-to-image", "inpainting"):
        return
    props = record["inputs"].get("properties") or {}
    package = record["package"]
    out = record["outputs"][0]
    for arg in FOLDER_ARGS:
        if arg not in props and arg not in (package.get("generate_args") or {}):
            continue
        # what the folder holds, as the catalogue's help text says: masks only when it says so
        # (00004 is mask-to-image, yet its input_path holds mammograms for the image pool)
        help_text = str((props.get(arg) or {}).get("description", "")).lower()
        help_text = help_text.split("help=", 1)[1] if "help=" in help_text else help_text  # not the default path
        name, kind = ("mask", "mask") if "mask" in help_text else ("image", "image")
        if name in props:
            notes.append(f"{arg}: not mapped to an array input ({name!r} is already a parameter)")
            continue
        props.pop(arg, None)
        default = (package.get("generate_args") or {}).pop(arg, None)
        notes[:] = [n for n in notes if not n.startswith(f"generate argument {arg}=")]  # about the dropped default
        spec: dict[str, Any] = {
            "name": name, "kind": kind, "dims": 2, "shape": [1, 1],
            "shape_max": [TRANSLATOR_MAX_SIDE, TRANSLATOR_MAX_SIDE], "dtype": "uint8",
            "channels": int(out.get("channels", 1)), "value_range": [0, 255], "medigan_arg": arg,
            "description": f"one image per sample, written alone into a folder passed as medigan's {arg}"}
        bundled = _bundled_folder(default)
        if bundled:  # medigan's default: the package's own example images (also the model test's inputs)
            spec["default"] = spec["test"] = bundled
        record.setdefault("array_inputs", []).append(spec)
        notes.append(f"{arg} (a folder of images) became the array input {name!r}; the runner stages input i in a "
                     "folder of its own" + (f"; its default, the package's {bundled!r}, is the input when none is "
                                            "given (cycled) and the model test's" if bundled else ""))


def _bundled_folder(default: Any) -> str | None:
    """The folder inside the package that a ``{package}/<folder>`` default names, else None."""
    prefix = f"{PACKAGE_PLACEHOLDER}/"
    if not isinstance(default, str) or not default.startswith(prefix):
        return None
    rest = default[len(prefix):].strip("/")
    ok = rest and ".." not in rest.split("/") and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_./-]*", rest)
    return rest if ok else None
