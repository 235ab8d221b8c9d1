"""What each output file format can hold, and what a run says when it leaves an output out.

The one owner of the rule "PNG holds no volumes": which outputs of a record a run
writes in a format (:func:`select_outputs`), the reason recorded for each output left
out, and the words the SDK's log and the command line use for them
(:func:`left_out_by_format`, :func:`log_left_out`, :func:`left_out_advice`). Light on
purpose (no numpy), so the command line can word its summary without the writers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, Sequence, TypeVar

from synthmed.registry.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.registry.outputs import OutputSpec

log = logging.getLogger(__name__)

#: the dimensions of one sample each file format holds ("auto" picks per output)
HOLDS: Mapping[str, tuple[int, ...]] = {"auto": (2, 3), "png": (2,), "npy": (2, 3), "nifti": (2, 3), "dicom": (2, 3)}
#: the formats that hold volumes, in the order the messages name them
VOLUME_FORMATS = ("nifti", "dicom", "npy")
_NAMES = {"png": "PNG"}
#: the reason recorded for an output the run was not asked for
NOT_SELECTED = "not selected"

S = TypeVar("S", bound="OutputSpec")


def holds(fmt: str, dims: int) -> bool:
    """Whether files of format ``fmt`` hold a sample with ``dims`` dimensions."""
    return dims in HOLDS.get(fmt, (2, 3))


def _others() -> str:
    return f"{', '.join(VOLUME_FORMATS[:-1])} or {VOLUME_FORMATS[-1]}"


def _holds_words(fmt: str) -> str:
    return f"{_NAMES.get(fmt, fmt)} holds 2D images"


def select_outputs(ref: str, specs: Sequence[S], names: Sequence[str] | str | None,
                   fmt: str) -> tuple[list[S], dict[str, str]]:
    """The outputs a run writes, and those it leaves out with the reason.

    ``names`` (a list, or "a,b" text) picks outputs by name; an unknown name is an error
    listing the outputs. Without ``names`` every output is written, except those the
    format cannot hold (format "png" writes the 2D outputs and leaves the volumes out:
    they need nifti, dicom or npy); asking for such an output by name is an error."""
    by_name = {s.name: s for s in specs}
    all_names = ", ".join(f"{s.name} ({s.dims}D{', ' + s.kind if s.kind else ''})" for s in specs)
    if names is not None:
        wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n).strip() for n in names]
        wanted = list(dict.fromkeys(n for n in wanted if n))
        if not wanted:
            raise ConfigError(f"{ref}: no outputs selected", hint=f"its outputs are: {all_names}")
        unknown = [n for n in wanted if n not in by_name]
        if unknown:
            raise ConfigError(f"{ref} has no output{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
                              hint=f"its outputs are: {all_names}")
        chosen = [s for s in specs if s.name in wanted]
    else:
        chosen = list(specs)
    left_out = {s.name: NOT_SELECTED for s in specs if s not in chosen}
    cannot = [s for s in chosen if not holds(fmt, s.dims)]
    if cannot and names is not None:
        raise ConfigError(f"{ref}: output(s) {', '.join(s.name for s in cannot)} are 3D volumes; {_holds_words(fmt)}",
                          hint=f"use --format {_others()} for them (or leave them out of --outputs)")
    if cannot and len(cannot) == len(chosen):
        raise ConfigError(f"{ref}: all its outputs ({', '.join(s.name for s in cannot)}) are 3D volumes; "
                          f"{_holds_words(fmt)}", hint=f"use --format {_others()}")
    for s in cannot:
        left_out[s.name] = f"3D volume: {_holds_words(fmt)}; use --format {_others()}"
    return [s for s in chosen if holds(fmt, s.dims)], left_out


def left_out_by_format(left_out: Mapping[str, str]) -> list[str]:
    """The outputs a run left out because its format cannot hold them (not those the
    run was not asked for)."""
    return [name for name, why in left_out.items() if why != NOT_SELECTED]


def log_left_out(ref: str, left_out: Mapping[str, str]) -> None:
    """The SDK's warning when a run leaves volumes out of a PNG run."""
    volumes = left_out_by_format(left_out)
    if volumes:
        log.warning("%s: %s not written as PNG (3D volumes; use format %s for them)", ref, ", ".join(volumes),
                    _others())


def left_out_advice(left_out: Mapping[str, str]) -> str | None:
    """The command line's line about volumes a PNG run left out (None: nothing left out)."""
    volumes = left_out_by_format(left_out)
    if not volumes:
        return None
    return (f"not written: {', '.join(volumes)} (3D volumes; {_holds_words('png')}): "
            f"use --format {_others()}, e.g. --outputs {','.join(volumes)} --format nifti")
