"""The controlled vocabulary of modality and anatomy: DICOM's modality codes (MG, CT, MR,
US, XA, OCT, ...) with display names, and a small list of anatomy terms, each with the free
text that means it.

Records keep whatever words their authors wrote (a merged record never changes); the
catalog normalises at index time: facets and filters use the codes and terms
(:func:`modality_codes`, :func:`anatomy_terms`), full-text search finds a record by its own
words, its codes and their display names (:func:`search_text`), and pages show display
names. The medigan importer writes codes and keeps medigan's words as tags.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from .errors import Problem

#: DICOM modality code -> (display name, words and phrases that mean it, lower case)
MODALITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "MG": ("Mammography", ("mammography", "mammogram", "mammograms", "mmg", "ffdm", "x-ray mammography",
                           "digital mammography", "full-field digital mammography", "tomosynthesis", "dbt")),
    "CT": ("Computed tomography", ("ct", "computed tomography", "ct scan", "cbct", "cone-beam ct")),
    "MR": ("Magnetic resonance", ("mr", "mri", "magnetic resonance", "magnetic resonance imaging", "flair", "t1",
                                  "t1c", "t1w", "t2", "t2w", "dwi", "t1 contrast-enhanced", "brain mri",
                                  "cranial mri")),
    "US": ("Ultrasound", ("us", "ultrasound", "ultrasonography", "sonography", "echography", "echocardiography")),
    "XA": ("X-ray angiography", ("xa", "x-ray angiography", "angiography", "angiogram")),
    "DX": ("Digital radiography", ("dx", "cr", "radiography", "x-ray", "xray", "chest x-ray", "cxr", "radiograph")),
    "PT": ("Positron emission tomography", ("pt", "pet", "positron emission tomography")),
    "NM": ("Nuclear medicine", ("nm", "nuclear medicine", "scintigraphy", "spect")),
    "OCT": ("Optical coherence tomography", ("oct", "optical coherence tomography")),
    "OP": ("Ophthalmic photography", ("op", "fundus", "fundus photography", "colour fundus photograph",
                                      "color fundus photograph", "colour fundus photography", "retinal photography",
                                      "ophthalmic photography", "cfp")),
    "SM": ("Slide microscopy", ("sm", "histopathology", "histology", "pathology", "digital pathology", "ihc",
                                "immunohistochemistry", "h&e", "whole slide imaging", "wsi",
                                "brightfield microscopy", "microscopy")),
    "ES": ("Endoscopy", ("es", "endoscopy", "gastrointestinal endoscopy", "colonoscopy", "gastroscopy")),
    "XC": ("External-camera photography", ("xc", "dermoscopy", "dermatoscopy", "clinical photography")),
    # DICOM's own code for a modality none of the others names (`synthmed package init` writes "other")
    "OT": ("Other", ("ot", "other")),
}

#: anatomy term -> words that mean it (lower case); a small list, grown as records need it
ANATOMY: dict[str, tuple[str, ...]] = {
    "head": ("head", "cranial", "cranium", "skull"),
    "brain": ("brain", "cerebral", "cerebrum"),
    "eye": ("eye", "eyes", "ocular"),
    "retina": ("retina", "retinal", "fundus"),
    "breast": ("breast", "breasts", "mammary"),
    "chest": ("chest", "thorax", "thoracic"),
    "lung": ("lung", "lungs", "pulmonary"),
    "heart": ("heart", "cardiac"),
    "abdomen": ("abdomen", "abdominal"),
    "liver": ("liver", "hepatic"),
    "kidney": ("kidney", "kidneys", "renal"),
    "colon": ("colon", "colonic", "colorectal", "bowel", "large intestine"),
    "prostate": ("prostate",),
    "pelvis": ("pelvis", "pelvic"),
    "spine": ("spine", "spinal", "vertebra", "vertebrae"),
    "knee": ("knee", "knees"),
    "bone": ("bone", "bones", "skeletal"),
    "skin": ("skin", "cutaneous"),
}

_MODALITY_WORDS = {w: code for code, (_, words) in MODALITIES.items() for w in words}
_ANATOMY_WORDS = {w: term for term, words in ANATOMY.items() for w in words}
#: words that qualify a modality without changing it ("full-field digital MMG" is MG)
_QUALIFIERS = re.compile(r"\b(full[- ]field|digital|2d|3d|x-ray|screening|diagnostic)\b")


def _key(text: Any) -> str:
    return " ".join(str(text).lower().replace("_", " ").split())


def modality_code(term: Any) -> str | None:
    """The DICOM modality code a free-text term means (``"full-field digital MMG"`` ->
    ``"MG"``), or None when the vocabulary does not know it."""
    key = _key(term)
    if key.upper() in MODALITIES:
        return key.upper()
    if key in _MODALITY_WORDS:
        return _MODALITY_WORDS[key]
    bare = " ".join(_QUALIFIERS.sub(" ", key).split())
    if bare in _MODALITY_WORDS:
        return _MODALITY_WORDS[bare]
    if "mammo" in key or re.search(r"\bmmg\b", key):
        return "MG"
    return None


def anatomy_term(term: Any) -> str | None:
    """The anatomy term a free-text word means (``"breasts"`` -> ``"breast"``), or None."""
    return _ANATOMY_WORDS.get(_key(term))


def modality_codes(terms: Iterable[Any]) -> list[str]:
    """The codes of a record's modality terms, in first-seen order, without repeats."""
    return list(dict.fromkeys(c for c in (modality_code(t) for t in terms) if c))


def anatomy_terms(terms: Iterable[Any]) -> list[str]:
    """The anatomy terms of a record's anatomy words, in first-seen order, without repeats."""
    return list(dict.fromkeys(a for a in (anatomy_term(t) for t in terms) if a))


def modality_display(code: str) -> str:
    """``"MG"`` -> ``"Mammography"`` (a code the vocabulary lacks is shown as it is)."""
    entry = MODALITIES.get(code.upper())
    return entry[0] if entry else code


def facet_modalities(terms: Iterable[Any]) -> list[str]:
    """What a record shows under the modality facet: its codes; a record none of whose
    terms the vocabulary knows keeps its own words (nothing disappears from the facets)."""
    terms = [str(t) for t in terms]
    return modality_codes(terms) or terms


def facet_anatomy(terms: Iterable[Any]) -> list[str]:
    """The anatomy facet's values of a record: its terms, else its own words."""
    terms = [str(t) for t in terms]
    return anatomy_terms(terms) or terms


def record_warnings(data: Mapping[str, Any], where: str) -> list[Problem]:
    """A record none of whose modality words the vocabulary knows (it still validates: its
    own words are its facet; the index gate refuses it in a new version)."""
    mods = data.get("modality")
    if not isinstance(mods, list) or not mods or modality_codes(mods):
        return []
    return [Problem(where, "$.modality",
                    f"no modality the vocabulary knows ({', '.join(map(str, mods))}): name a DICOM modality code "
                    f"({', '.join(MODALITIES)}) or a term that means one (e.g. 'mammography')", "warning")]


def search_text(field: str, terms: Iterable[Any]) -> str:
    """The full-text of a record's modality or anatomy: its own words, plus the codes and
    display names (or anatomy terms) they mean, so a search for any of them finds it."""
    terms = [str(t) for t in terms]
    if field == "modality":
        codes = modality_codes(terms)
        extra = [x for c in codes for x in (c, modality_display(c))]
    else:
        extra = anatomy_terms(terms)
    return " ".join(dict.fromkeys(terms + extra))
