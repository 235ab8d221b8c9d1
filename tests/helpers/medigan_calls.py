"""Every public method of medigan 1.0.0's ``Generators``, called with the same arguments
on medigan and on synthmed (``bench/medigan_api.py`` runs both live;
``tests/test_medigan_compat.py`` runs synthmed against medigan's recorded answers in
``tests/fixtures/medigan/answers-1.0.0.json``).

The configuration both sides see: medigan's catalogue entries 00001..00015
(``tests/fixtures/medigan/medigan-global-00001-00015.json``), plus the template package
of ``bench/medigan_template`` (a small copy, ngf 4, random weights) as
``00099_TEMPLATE_DCGAN_128``: medigan reads them from ``config/global.json`` and
``models/<id>/<package>.zip``; synthmed from a site whose records its medigan importer
made from the same entries (the template's pinned to its zip).

Answers are normalised before comparing: ids are lower-cased (the recorded answers were
normalised so; the medigan API answers with medigan's own spelling, which
``test_medigan_api_spells_medigan_ids_and_counts_executors`` checks without normalising), arrays become their
shape and dtype, objects their type's role and model id, output folders their file names.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import re
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

TEMPLATE_ID = "00099_TEMPLATE_DCGAN_128"
TEMPLATE_PACKAGE = TEMPLATE_ID
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "bench" / "medigan_template"
LOCAL_ID = "00101_LOCAL_TEMPLATE"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "medigan"
CATALOGUE = FIXTURES / "medigan-global-00001-00015.json"
ANSWERS = FIXTURES / "answers-1.0.0.json"

#: medigan's public methods (1.0.0), as its class lists them (``__len__``/``__getitem__`` too)
MEDIGAN_METHODS = [
    "get_config_by_id", "is_model_metadata_valid", "add_model_to_config", "list_models",
    "get_selection_criteria_by_id", "get_selection_criteria_by_ids", "get_selection_values_for_key",
    "get_selection_keys", "get_models_by_key_value_pair", "rank_models_by_performance",
    "find_matching_models_by_values", "find_models_and_rank", "find_models_rank_and_generate",
    "find_model_and_generate", "add_all_model_executors", "add_model_executor", "is_model_executor_already_added",
    "find_model_executor_by_id", "get_model_executor", "generate", "get_generate_function", "add_model_contributor",
    "get_model_contributor_by_id", "add_metadata_from_file", "add_metadata_from_input", "push_to_zenodo",
    "push_to_github", "test_model", "contribute", "get_as_torch_dataloader", "get_as_torch_dataset", "visualize",
    "__len__", "__getitem__",
]


@dataclass
class Call:
    name: str  # a label, unique
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: why the call is made on synthmed only (medigan would need the network), or None
    synthmed_only: str | None = None
    #: not made on either side here (it would reach a real service); tested elsewhere
    medigan_only_skip: bool = False


#: where synthmed answers otherwise, on purpose (docs/sdk.md "medigan compatibility")
DIFFERENCES: dict[str, str] = {
    "get_config_by_id(1)": "without a key synthmed returns its own record (medigan's key paths work on both)",
    "add_all_model_executors()": "medigan downloads every package (here: 15 Zenodo files, so it is not called); "
                                 "synthmed prepares the models the site can run and skips the others",
    "test_model(TEMPLATE, is_local_model=False)": "synthmed returns the test result (medigan returns None); "
                                                  "both raise when the test fails",
    "visualize(TEMPLATE, auto_close=True)": "synthmed writes a PNG grid and returns its path; medigan opens a "
                                            "matplotlib window",
    "push_to_github(LOCAL)": "synthmed contributes through an index (index=...), never a GitHub issue: without "
                             "an index it says so",
    "push_to_zenodo(LOCAL)": "both need zenodo.org (not called here; synthmed's upload is tested against the "
                             "Zenodo emulator in tests/test_medigan_compat.py)",
    "contribute(LOCAL)": "both need the network (not called here); synthmed goes through an index pull request",
    "add_metadata_from_input(LOCAL)": "medigan fills its full template of fields; synthmed writes the essential "
                                      "ones and does not prompt",
    "get_selection_criteria_by_id(1)": "synthmed rebuilds the selection dict from its record: fields the "
                                       "importer does not keep (null metrics, FID_no_images, provided dates) "
                                       "are absent",
    "get_selection_criteria_by_ids([1, '00002'])": "as get_selection_criteria_by_id",
    "get_selection_keys()": "as get_selection_criteria_by_id: the keys synthmed's records carry",
    "get_selection_values_for_key('modality', 3)": "medigan 1.0.0 matches no short id in this method (TypeError); "
                                                    "synthmed takes medigan's id forms everywhere",
    "get_selection_keys(2)": "as get_selection_values_for_key: medigan 1.0.0 raises TypeError for a short id",
    "rank_models_by_performance([1, 2, 3], 'FID_ratio')": "medigan 1.0.0 matches no short id in model_ids (so it "
                                                          "ranks nothing); synthmed ranks models 1, 2 and 3",
}


def local_metadata(work: Path) -> dict[str, Any]:
    """A contributed model's medigan metadata: entry 00005's, its package in ``work/local``."""
    entry = json.loads(CATALOGUE.read_text())["00005_DCGAN_MMG_MASS_ROI"]
    entry["execution"]["package_link"] = str(work / "local")
    entry["execution"]["package_name"] = LOCAL_ID
    return {LOCAL_ID: entry}


def calls(work: Path) -> list[Call]:
    """The calls, with output folders under ``work``."""
    meta = local_metadata(work)
    return [
        Call("list_models()", "list_models"),
        Call("get_config_by_id(1)", "get_config_by_id", (1,)),
        Call("get_config_by_id('00005', 'selection.performance.FID')", "get_config_by_id",
             ("00005", "selection.performance.FID")),
        Call("get_config_by_id(8, 'selection.modality')", "get_config_by_id", (8, "selection.modality")),
        Call("get_config_by_id(TEMPLATE, 'execution.generate_method.name')", "get_config_by_id",
             (TEMPLATE_ID, "execution.generate_method.name")),
        Call("is_model_metadata_valid(LOCAL, meta)", "is_model_metadata_valid", (LOCAL_ID, meta)),
        Call("add_model_to_config(LOCAL, meta)", "add_model_to_config", (LOCAL_ID, meta),
             {"is_local_model": True, "store_new_config": False}),
        Call("get_selection_criteria_by_id(1)", "get_selection_criteria_by_id", (1,)),
        Call("get_selection_criteria_by_ids([1, '00002'])", "get_selection_criteria_by_ids", ([1, "00002"],)),
        Call("get_selection_values_for_key('modality', 3)", "get_selection_values_for_key", ("modality", 3)),
        Call("get_selection_values_for_key('type')", "get_selection_values_for_key", ("type",)),
        Call("get_selection_keys()", "get_selection_keys"),
        Call("get_selection_keys(2)", "get_selection_keys", (2,)),
        Call("get_models_by_key_value_pair('modality', 'mmg')", "get_models_by_key_value_pair", ("modality", "mmg")),
        Call("get_models_by_key_value_pair('type', 'CycleGAN', True)", "get_models_by_key_value_pair",
             ("type", "CycleGAN", True)),
        Call("rank_models_by_performance(metric='FID')", "rank_models_by_performance", (), {"metric": "FID"}),
        Call("rank_models_by_performance(metric='FID', order='desc')", "rank_models_by_performance", (),
             {"metric": "FID", "order": "desc"}),
        Call("rank_models_by_performance([1, 2, 3], 'FID_ratio')", "rank_models_by_performance",
             ([1, 2, 3], "FID_ratio")),
        Call("find_matching_models_by_values(['x-ray mammography', 'dcgan'])", "find_matching_models_by_values",
             (["x-ray mammography", "dcgan"],)),
        Call("find_matching_models_by_values(['inbreast', 'optimam'], 'OR')", "find_matching_models_by_values",
             (["inbreast", "optimam"], "OR")),
        Call("find_matching_models_by_values(['MMG', 'breast'], 'XOR', is_case_sensitive=True)",
             "find_matching_models_by_values", (["MMG", "breast"], "XOR"), {"is_case_sensitive": True}),
        Call("find_matching_models_by_values(['cyclegan'])", "find_matching_models_by_values", (["cyclegan"],)),
        Call("find_models_and_rank(['mammography'], metric='FID')", "find_models_and_rank", (["mammography"],),
             {"metric": "FID"}),
        Call("find_model_and_generate(['mmg'])", "find_model_and_generate", (["mmg"],), {"num_samples": 2}),
        Call("find_model_and_generate(['template'])", "find_model_and_generate", (["template"],),
             {"num_samples": 3, "output_path": str(work / "fmg")}),
        Call("find_models_rank_and_generate(['template'], metric='FID')", "find_models_rank_and_generate",
             (["template"],), {"metric": "FID", "num_samples": 3, "output_path": str(work / "fmrg")}),
        Call("add_all_model_executors()", "add_all_model_executors", synthmed_only="downloads every package"),
        Call("add_model_executor(TEMPLATE)", "add_model_executor", (TEMPLATE_ID,)),
        Call("is_model_executor_already_added(99)", "is_model_executor_already_added", (99,)),
        Call("find_model_executor_by_id(TEMPLATE)", "find_model_executor_by_id", (TEMPLATE_ID,)),
        Call("get_model_executor(TEMPLATE)", "get_model_executor", (TEMPLATE_ID,)),
        Call("generate(TEMPLATE, 40, output_path)", "generate", (TEMPLATE_ID, 40, str(work / "gen"))),
        Call("generate(99, 3, save_images=False)", "generate", (99, 3), {"save_images": False}),
        Call("get_generate_function(TEMPLATE, 2, save_images=False)()", "get_generate_function", (TEMPLATE_ID, 2),
             {"save_images": False}),
        Call("add_model_contributor(LOCAL, init_py)", "add_model_contributor", (LOCAL_ID,),
             {"init_py_path": str(work / "local" / "__init__.py")}),
        Call("get_model_contributor_by_id(LOCAL)", "get_model_contributor_by_id", (LOCAL_ID,)),
        Call("add_metadata_from_file(LOCAL)", "add_metadata_from_file", (LOCAL_ID, str(work / "local-meta.json"))),
        Call("add_metadata_from_input(LOCAL)", "add_metadata_from_input",
             (LOCAL_ID, "500", ".pt", "generate", ["numpy", "torch"]),
             {"fill_more_fields_interactively": False, "output_path": str(work / "meta-out")}),
        Call("push_to_zenodo(LOCAL)", "push_to_zenodo", (LOCAL_ID, "token"), synthmed_only="needs zenodo.org",
             medigan_only_skip=True),
        Call("push_to_github(LOCAL)", "push_to_github", (LOCAL_ID, "token"), synthmed_only="needs github.com"),
        Call("test_model(TEMPLATE, is_local_model=False)", "test_model", (TEMPLATE_ID,),
             {"is_local_model": False, "num_samples": 3}),
        Call("contribute(LOCAL)", "contribute", (LOCAL_ID, str(work / "local" / "__init__.py"), "t", "t"),
             synthmed_only="needs the network"),
        Call("get_as_torch_dataloader(model_id=TEMPLATE, num_samples=4, batch_size=2, num_workers=1)", "get_as_torch_dataloader",
             (), {"model_id": TEMPLATE_ID, "num_samples": 4, "batch_size": 2, "num_workers": 1}),
        Call("get_as_torch_dataset(TEMPLATE, 3)", "get_as_torch_dataset", (TEMPLATE_ID, 3)),
        Call("visualize(TEMPLATE, auto_close=True)", "visualize", (TEMPLATE_ID,), {"auto_close": True},
             synthmed_only="opens a matplotlib window"),
        Call("__len__()", "__len__"),
        Call("__getitem__(0)", "__getitem__", (0,)),
    ]


def prepare_work(work: Path, files: dict[str, bytes]) -> None:
    """The files the contributor calls read: a local package folder (``files``: the
    template's ``__init__.py`` and weights, by base name) and a metadata file."""
    (work / "local").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (work / "local" / Path(name).name).write_bytes(data)
    (work / "local-meta.json").write_text(json.dumps(local_metadata(work)))


# --- the template package and the two configurations --------------------------------

def reproducible_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name])
    return buf.getvalue()


def template_files(ngf: int = 64, seed: int = 1234) -> dict[str, bytes]:
    """The template package's files: ``<package>/__init__.py`` (bench/medigan_template) and
    ``<package>/500.pt`` with random weights (seeded)."""
    import torch

    spec = importlib.util.spec_from_file_location("synthmed_bench_medigan_template", TEMPLATE_DIR / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    net = module.Generator(ngf=ngf)
    buf = io.BytesIO()
    torch.save({"generator": net.state_dict()}, buf)
    code = (TEMPLATE_DIR / "__init__.py").read_bytes()
    return {f"{TEMPLATE_PACKAGE}/__init__.py": code, f"{TEMPLATE_PACKAGE}/500.pt": buf.getvalue()}


def template_entry() -> dict[str, Any]:
    """medigan's global.json entry for the template (the fields medigan's template metadata has)."""
    return {
        "execution": {
            "package_name": TEMPLATE_PACKAGE, "package_link": f"models/{TEMPLATE_ID}/{TEMPLATE_PACKAGE}.zip",
            "model_name": "500", "extension": ".pt", "image_size": [128, 128],
            "dependencies": ["numpy", "torch", "opencv-contrib-python-headless"],
            "generate_method": {"name": "generate", "args": {
                "base": ["model_file", "num_samples", "output_path", "save_images"], "custom": {}}},
        },
        "selection": {
            "performance": {"SSIM": None, "MSE": None, "NSME": None, "PSNR": None, "IS": None, "turing_test": None,
                            "FID": None, "CLF": {"trained_on_fake": {}, "trained_on_real_and_fake": {},
                                                 "trained_on_real": {}}},
            "use_cases": ["benchmarking"], "organ": ["breast"], "modality": ["MMG"], "vendors": [], "centres": [],
            "function": ["noise to image", "image generation", "unconditional generation", "data augmentation"],
            "condition": [], "dataset": [], "augmentations": [], "generates": ["mass roi"],
            "height": 128, "width": 128, "depth": None, "type": "DCGAN", "license": "MIT",
            "dataset_type": "public", "privacy_preservation": None, "tags": ["template", "random weights"],
            "year": "2026",
        },
        "description": {"title": "medigan's model template with random weights (benchmark)", "provided_date": None,
                        "trained_date": None, "provided_after_epoch": None, "version": "0.0.1",
                        "publication": None, "doi": [], "inputs": [],
                        "comment": "bench/medigan_template: medigan's template layout, random weights"},
    }


def build_side_by_side(cache: Path, ngf: int = 4) -> dict[str, Any]:
    """medigan's working folder and a synthmed site with the catalogue and the template."""
    from .sites import make_site_home

    from synthmed.registry.authoring.medigan_import import convert_entry

    zip_bytes = reproducible_zip(template_files(ngf))
    tzip = cache / f"api-template-{hashlib.sha256(zip_bytes).hexdigest()[:12]}.zip"
    tzip.write_bytes(zip_bytes)
    entries = json.loads(CATALOGUE.read_text())
    template = template_entry()
    template["selection"]["performance"]["FID"] = 500.0  # ranked last by FID ascending
    entries[TEMPLATE_ID] = template
    work = cache / "api-medigan-work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "config").mkdir(parents=True)
    (work / "models" / TEMPLATE_ID).mkdir(parents=True)
    (work / "models" / "__init__.py").write_text("")
    (work / "config" / "global.json").write_text(json.dumps(entries, indent=1))
    shutil.copy(tzip, work / "models" / TEMPLATE_ID / f"{TEMPLATE_ID}.zip")
    records = []
    for original_id, entry in entries.items():
        outcome = convert_entry(original_id, entry)
        if outcome.record is None:
            raise SystemExit(f"synthmed's importer refused {original_id}: {outcome.reason}")
        rec = outcome.record
        if original_id == TEMPLATE_ID:
            rec["package"]["artefact"].update(sha256=hashlib.sha256(zip_bytes).hexdigest(), size=len(zip_bytes),
                                              sources=[tzip.resolve().as_uri()])
            # the template needs OpenCV only to write files itself (save_images=True), which
            # synthmed never asks of it: without the requirement it runs in this environment
            rec["package"]["requirements"] = [r for r in rec["package"]["requirements"] if "opencv" not in r]
        records.append(rec)
    home = cache / "api-site"
    shutil.rmtree(home, ignore_errors=True)
    make_site_home(home, records)
    return {"work": work, "home": home, "local_files": template_files(ngf)}


_ID = re.compile(r"^\d{5}_[A-Za-z0-9_.-]+$")


def normalise(value: Any) -> Any:
    """An answer in a form both sides can be compared in (JSON-able)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value.lower() if _ID.match(value) else value
    if isinstance(value, Path):
        return {"path": True}
    if isinstance(value, np.ndarray):
        return {"array": list(value.shape), "dtype": str(value.dtype)}
    if type(value).__module__.startswith("torch") and hasattr(value, "shape"):
        return {"tensor": list(value.shape)}
    if isinstance(value, dict):
        return {normalise(k) if isinstance(k, str) else str(k): normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, np.ndarray) for v in value):
            return {"arrays": len(value), "first": normalise(value[0])}
        return [normalise(v) for v in value]
    if type(value).__name__ == "ModelMatchCandidate":
        return {"match": normalise(value.model_id)}
    if hasattr(value, "model_id"):  # medigan's ModelExecutor / ModelContributor, synthmed's ModelContributor
        role = "contributor" if "Contributor" in type(value).__name__ else "executor"
        return {role: normalise(value.model_id)}
    if hasattr(value, "id") and hasattr(value, "ref"):  # synthmed's Model is its model executor
        return {"executor": normalise(value.id)}
    if type(value).__name__ == "DataLoader" or type(value).__name__ == "EpochLoader":
        batch = next(iter(value))
        return {"loader": normalise(batch)}
    if hasattr(value, "__getitem__") and hasattr(value, "__len__"):
        return {"dataset": len(value), "item": normalise(value[0])}
    if callable(value):
        return {"callable": normalise(value())}
    return {"type": type(value).__name__}


def run_calls(generators: Any, work: Path, medigan: bool, only: set[str] | None = None) -> dict[str, Any]:
    """Every call on ``generators``: ``{name: {"answer": ..., "files": [...]}}`` or ``{"error": type}``."""
    out: dict[str, Any] = {}
    for c in calls(work):
        if only is not None and c.name not in only:
            continue
        if (medigan and c.synthmed_only) or c.medigan_only_skip:
            out[c.name] = {"not_called": c.synthmed_only}
            continue
        fn: Callable[..., Any] = getattr(generators, c.method)
        try:
            value = fn(*c.args, **c.kwargs)
            entry: dict[str, Any] = {"answer": normalise(value)}
        except Exception as exc:  # noqa: BLE001 - an answer of its own
            entry = {"error": type(exc).__name__}
        folder = c.kwargs.get("output_path") or (c.args[2] if c.method == "generate" and len(c.args) > 2 else None)
        if isinstance(folder, str) and Path(folder).is_dir():
            entry["files"] = sorted(p.name for p in Path(folder).glob("*.png"))
        # the work folder differs between the two runs
        text = json.dumps(entry).replace(str(work.resolve()), "<work>").replace(str(work), "<work>")
        out[c.name] = json.loads(text)
    return out


def compare(medigan: dict[str, Any], synthmed: dict[str, Any]) -> dict[str, str]:
    """Per call: "same", "documented: <why>", or "DIFFERENT"."""
    verdict = {}
    for name, theirs in medigan.items():
        if name == "__signatures__":
            continue
        ours = synthmed.get(name)
        if ours == theirs and "not_called" not in theirs:
            verdict[name] = "same"
        elif name in DIFFERENCES:
            verdict[name] = "documented: " + DIFFERENCES[name]
        else:
            verdict[name] = "DIFFERENT"
    return verdict
