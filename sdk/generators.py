"""``Generators``: medigan 1.0.0's ``Generators`` on a synthmed site.

A medigan user changes one import::

    from synthmed import Generators
    generators = Generators()
    generators.generate(model_id=8, num_samples=10)

All public methods of medigan 1.0.0's ``Generators`` are here, with medigan's arguments,
return values, file names (``batch_<b>_<i>.png``), default folders (a new
``output/<model_id>/<time>/`` per call), id forms (``8``, ``'00008'``, medigan's
upper-case ids), config key paths (``selection.performance.FID``) and selection rules
(:mod:`synthmed.medigan_compat`). What differs underneath: models come from the site's
catalog and are verified against their pinned sha256; nothing is pip-installed into your
environment (a model whose requirements are not met runs in a worker with its own);
contributions go through an index, not a GitHub issue; a visualisation is a PNG grid,
not a window. Those differences warn once (:class:`~synthmed.medigan_compat.MediganDifference`).

Seeds: a call without ``seed=`` draws a fresh seed, records it in the output folder's
``synthmed.json`` and in :attr:`Generators.last_seed`, so any run can be made again
with ``seed=that``; sample *i* of a run uses seed ``seed + i``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from synthmed.registry.contribute import contribute, reproducible_zip, test_package_dir, upload_zenodo
from synthmed.registry.errors import ConfigError, ModelNotFound, ModelRunError
from synthmed.registry.medigan_import import convert_entry
from synthmed.registry.modeltest_site import test_ref
from synthmed.registry.ranking import ranked_values
from synthmed.registry.records import Record, validate_data

from . import medigan_compat as mc
from .medigan_compat import ModelMatchCandidate
from .progress import ProgressArg, progress_bar
from .seeds import fresh_seed
from .site import Model, Site, seed_value

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import DataLoader, Dataset

    from synthmed.registry.catalog import CatalogEntry

log = logging.getLogger(__name__)

#: keyword arguments of generate() that synthmed takes for itself, unless the model's
#: inputs declare a parameter of that name
RUN_KWARGS = ("seed", "batch_size", "device", "mode", "format", "bit_depth", "outputs", "window", "timeout_s",
              "progress", "chunk_size", "layout", "png_compress_level", "writers")


class ModelContributor:
    """A local model being contributed (medigan's ``ModelContributor``): its id, the
    folder of its ``__init__.py``, and its medigan metadata once added."""

    def __init__(self, model_id: str, init_py_path: str | Path | None = None) -> None:
        self.model_id = model_id
        self.init_py_path = Path(init_py_path) if init_py_path else None
        self.package_path = (self.init_py_path.parent if self.init_py_path and self.init_py_path.suffix == ".py"
                             else self.init_py_path)
        self.metadata: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"ModelContributor(model_id={self.model_id!r}, package_path={str(self.package_path)!r})"


class Generators:
    """medigan's ``Generators``, on a synthmed site (``Site()`` by default).

    The first positional argument is the site (a :class:`Site`, or its folder); medigan's
    ``config_manager``/``model_selector`` objects are accepted and ignored (synthmed's
    configuration is the site's catalog), ``initialize_all_models=True`` prepares every
    model the site can run. ``chunk_size`` sets the seeds per call of medigan-1 packages
    (default: chosen per run, see :func:`synthmed.registry.formats.medigan1.choose_medigan_chunk`)."""

    def __init__(self, site: Site | str | Path | None = None, model_selector: Any = None,
                 model_executors: list[Model] | None = None, model_contributors: list[ModelContributor] | None = None,
                 initialize_all_models: bool = False, *, config_manager: Any = None, offline: bool | None = None,
                 device: str | None = None, mode: str | None = None, progress: ProgressArg = None,
                 chunk_size: int | None = None, **medigan_kwargs: Any) -> None:
        if site is not None and not isinstance(site, (Site, str, Path)):
            config_manager, site = site, None
        if config_manager is not None or model_selector is not None:
            mc.warn_once("config_manager", "Generators: medigan's config_manager/model_selector are not used; "
                         "synthmed reads models from the site's catalog (pass the site as the first argument)")
        if medigan_kwargs:
            log.debug("ignoring medigan-only arguments: %s", ", ".join(medigan_kwargs))
        self.site = site if isinstance(site, Site) else Site(site, offline=offline, device=device, mode=mode,
                                                             progress=progress)
        if chunk_size is not None:
            self.site.runner_options = self.site.runner_options.with_(medigan_chunk=chunk_size)
        #: progress bars (generate, visualize, fetches): None on a terminal only, False never, True always
        self.progress: ProgressArg = progress if not isinstance(site, Site) or progress is not None else site.progress
        self._models: dict[str, Model] = {}
        #: medigan's list of model executors: synthmed's :class:`Model` objects, in the order added
        self.model_executors: list[Model] = list(model_executors or [])
        self.model_contributors: list[ModelContributor] = list(model_contributors or [])
        #: records added with add_model_to_config (this session only): id -> medigan metadata
        self._local_config: dict[str, dict[str, Any]] = {}
        #: the first seed of the last generate()/dataset call (drawn when none was given)
        self.last_seed: int | None = None
        #: the folder the last generate() with save_images wrote to (medigan returns None)
        self.last_output_path: Path | None = None
        if initialize_all_models:
            self.add_all_model_executors()

    def __repr__(self) -> str:
        return f"Generators(site={self.site!r}, model_executors={[m.ref for m in self.model_executors]})"

    def __len__(self) -> int:
        return len(self.model_executors)

    def __getitem__(self, idx: int) -> Model:
        return self.model_executors[idx]

    # ------------------------------------------------------------------ ids, config ---

    def _entries(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for e in self.site.list_models():
            out.setdefault(e.id, e)
        return out

    def match_model_id(self, model_id: Any) -> str:
        """medigan's id forms (``8``, ``'00008'``, ``'00008_C-DCGAN_MMG_MASSES'``) -> the site's id."""
        if isinstance(model_id, str) and ("@" in model_id or "/" in model_id):
            return model_id  # a synthmed reference
        entries = self._entries()
        originals = {i: str((e.record.get("provenance") or {}).get("original_id") or "") for i, e in entries.items()}
        ids = list(entries) + [i for i in self._local_config if i not in entries]
        return mc.match_model_id(model_id, ids, {k: v for k, v in originals.items() if v})

    def _record(self, model_id: Any) -> Record:
        mid = self.match_model_id(model_id)
        if mid in self._local_config and mid not in self._entries():
            return Record(self._local_config[mid], "<add_model_to_config>")
        return self.site.record(mid)

    def _selections(self) -> dict[str, dict[str, Any]]:
        """{model id: medigan selection dict} for every model of the site. Models added with
        :meth:`add_model_to_config` are left out, as medigan's selection methods leave them
        out (its model selector keeps the models it started with)."""
        return {i: mc.medigan_config(e.record)["selection"] for i, e in self._entries().items()}

    def list_models(self) -> list[str]:
        """The model ids this site serves (latest version of each), plus any added this session."""
        return list(self._entries()) + [i for i in self._local_config if i not in self._entries()]

    def get_config_by_id(self, model_id: Any, config_key: str | None = None) -> Any:
        """The model's record, or the part below ``config_key``: medigan's paths
        (``selection.performance.FID``, ``execution.generator.name``, ``description.title``)
        or the record's own (``package.format``)."""
        return mc.config_value(self._record(model_id), config_key)

    def is_model_metadata_valid(self, model_id: Any, metadata: Mapping[str, Any], is_local_model: bool = True) -> bool:
        """medigan's checks of ``metadata`` (``{model_id: {execution, selection, description}}``:
        mandatory keys, the package link a local folder or file, or a URL), then that it
        makes a valid synthmed record; the problems are logged."""
        problems = mc.medigan_metadata_problems(str(model_id), metadata, is_local_model)
        if not problems:
            problems = self._metadata_problems(str(model_id), metadata)
        for p in problems:
            log.warning("%s: %s", model_id, p)
        return not problems

    def _metadata_record(self, model_id: str, metadata: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
        if metadata.get("format") == "synthmed-record/1":
            return dict(metadata), []
        entry = metadata.get(model_id, metadata) if isinstance(metadata.get(model_id), Mapping) else metadata
        if len(metadata) == 1 and not {"execution", "selection"} & set(metadata):
            entry = next(iter(metadata.values()))
        outcome = convert_entry(model_id, dict(entry))
        if outcome.record is None:
            return None, [outcome.reason or "cannot be converted"]
        return outcome.record, []

    def _metadata_problems(self, model_id: str, metadata: Mapping[str, Any]) -> list[str]:
        if not isinstance(metadata, Mapping):
            return [f"metadata is a {type(metadata).__name__}, not a JSON object"]
        record, problems = self._metadata_record(model_id, metadata)
        if record is None:
            return problems
        errors, _ = validate_data(record, f"<metadata of {model_id}>")
        return [f"{e.path}: {e.message}" for e in errors]

    def add_model_to_config(self, model_id: Any, metadata: Mapping[str, Any], is_local_model: bool | None = None,
                            overwrite_existing_metadata: bool = False, store_new_config: bool = True) -> bool:
        """Add a model's metadata to this session's configuration, so the config and
        selection methods see it. A site's catalog comes from its indexes only: to publish
        a model, contribute it (``synthmed contribute``)."""
        mc.warn_once("add_model_to_config", "add_model_to_config: synthmed adds the model to this Generators only "
                     "(a site's catalog changes only through its indexes; publish with `synthmed contribute`)")
        mid = str(model_id)
        if is_local_model is None:  # medigan: local when a contributor for it exists
            is_local_model = self.get_model_contributor_by_id(mid) is not None
        if not self.is_model_metadata_valid(mid, metadata, is_local_model):
            return False
        if mid in self.list_models() and not overwrite_existing_metadata:
            log.warning("%s is already configured; pass overwrite_existing_metadata=True to replace it", mid)
            return False
        record, problems = self._metadata_record(mid, metadata)
        if record is None:
            raise ConfigError(f"{mid}: the metadata cannot be read: {'; '.join(problems)}")
        self._local_config[str(record.get("id", mid))] = record
        return True

    # ---------------------------------------------------------------- selection ---

    def get_selection_criteria_by_id(self, model_id: Any, is_model_id_removed: bool = True) -> dict[str, Any]:
        """medigan's selection dict of one model (``{"model_id": ..., "selection": ...}``
        with ``is_model_id_removed=False``)."""
        mid = self.match_model_id(model_id)
        sel = mc.medigan_config(self._record(mid))["selection"]
        return sel if is_model_id_removed else {"model_id": mid, "selection": sel}

    def get_selection_criteria_by_ids(self, model_ids: list[Any] | None = None,
                                      are_model_ids_removed: bool = True) -> list[dict[str, Any]]:
        wanted = None if model_ids is None else {self.match_model_id(m) for m in model_ids}
        return [sel if are_model_ids_removed else {"model_id": mid, "selection": sel}
                for mid, sel in self._selections().items() if wanted is None or mid in wanted]

    def get_selection_values_for_key(self, key: str, model_id: Any = None) -> list[Any]:
        """The value at ``key`` (dotted) of each model's selection dict, or of one model's."""
        if model_id is not None:
            return [mc.deep_get(self.get_selection_criteria_by_id(model_id), key)]
        return [mc.deep_get(sel, key) for sel in self._selections().values()]

    def get_selection_keys(self, model_id: Any = None) -> list[str]:
        if model_id is not None:
            return list(self.get_selection_criteria_by_id(model_id))
        keys: list[str] = []
        for sel in self._selections().values():
            keys += [k for k in sel if k not in keys]
        return keys

    def get_models_by_key_value_pair(self, key1: str, value1: Any, is_case_sensitive: bool = False) -> list[dict[str, Any]]:
        return mc.models_by_key_value(self._selections(), key1, value1, is_case_sensitive)

    def rank_models_by_performance(self, model_ids: list[Any] | None = None, metric: str = "SSIM",
                                   order: str = "asc") -> list[dict[str, Any]]:
        """``[{"model_id": ..., metric: value}]`` sorted by the value, ascending unless
        ``order="desc"`` (medigan's rule: the order says nothing about which is better)."""
        ids = None if model_ids is None else [self.match_model_id(m) for m in model_ids]
        # which values are compared is the registry's rule (synthmed.registry.ranking): one
        # basis only, this site's measurements under one comparability key, else the
        # records' values of one source; the order is medigan's
        ranking, values = ranked_values(self.site.catalog, metric)
        if ranking.basis == "none":  # a dotted medigan path (CLF.trained_on_fake.accuracy), or no such metric
            return mc.rank(self._selections(), metric, order, ids)
        log.info("rank_models_by_performance: %s", ranking.describe())
        chosen = {mid: {"performance": {metric: values[(e.upstream, e.id)]}}
                  for mid, e in self._entries().items() if (e.upstream, e.id) in values}
        return mc.rank(chosen, metric, order, ids)

    def find_matching_models_by_values(self, values: list[Any] | str, target_values_operator: str = "AND",
                                       are_keys_also_matched: bool = False,
                                       is_case_sensitive: bool = False) -> list[ModelMatchCandidate]:
        """Models whose selection fields hold the values (a field equal to a value, or a
        list holding it, as medigan); ``AND`` needs every value, ``OR`` any, ``XOR`` one."""
        refs = {i: e.qualified_ref for i, e in self._entries().items()}
        return mc.find_matching(self._selections(), values, target_values_operator, are_keys_also_matched,
                                is_case_sensitive, refs)

    def find_models_and_rank(self, values: list[Any] | str, target_values_operator: str = "AND",
                             are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                             metric: str = "SSIM", order: str = "asc") -> list[dict[str, Any]]:
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if not matches:
            log.warning("no model matches %s", values)
            return []
        ranked = self.rank_models_by_performance([m.model_id for m in matches], metric, order)
        if not ranked:
            log.warning("none of the %d matching models has a %r metric", len(matches), metric)
        return ranked

    def find_model(self, values: list[Any] | str, target_values_operator: str = "AND",
                   are_keys_also_matched: bool = False, is_case_sensitive: bool = False) -> str:
        """The one model id matching the values (synthmed's; a clear error for none or several)."""
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if len(matches) != 1:
            raise mc.no_single_model(values, matches)
        return matches[0].model_id

    def find_model_and_generate(self, values: list[Any] | str, target_values_operator: str = "AND",
                                are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                                num_samples: int = 30, output_path: str | Path | None = None,
                                is_gen_function_returned: bool = False, install_dependencies: bool = False,
                                **kwargs: Any) -> Any:
        """Generate with the one model matching the values; none or several: logs an error
        and returns None (as medigan)."""
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if len(matches) != 1:
            log.error("%s", mc.no_single_model(values, matches))
            return None
        return self.generate(matches[0].model_id, num_samples, output_path,
                             is_gen_function_returned=is_gen_function_returned,
                             install_dependencies=install_dependencies, **kwargs)

    def find_models_rank_and_generate(self, values: list[Any] | str, target_values_operator: str = "AND",
                                      are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                                      metric: str = "SSIM", order: str = "asc", num_samples: int = 30,
                                      output_path: str | Path | None = None, is_gen_function_returned: bool = False,
                                      install_dependencies: bool = False, **kwargs: Any) -> Any:
        ranked = self.find_models_and_rank(values, target_values_operator, are_keys_also_matched, is_case_sensitive,
                                           metric, order)
        if not ranked:
            raise ModelNotFound(f"no model matches {values!r} and has a {metric!r} metric",
                                hint="adjust the values or the metric")
        best = ranked[0]
        log.info("generating with the first-ranked model %s (%s = %s)", best["model_id"], metric, best[metric])
        return self.generate(best["model_id"], num_samples, output_path,
                             is_gen_function_returned=is_gen_function_returned,
                             install_dependencies=install_dependencies, **kwargs)

    # ----------------------------------------------------------- model executors ---

    def _install_note(self, install_dependencies: bool) -> None:
        if install_dependencies:
            mc.warn_once("install_dependencies", "install_dependencies=True: synthmed never pip-installs into this "
                         "environment; a model whose requirements are not met runs in a worker process with an "
                         "environment of its own")

    def get_model(self, model_id: Any) -> Model:
        """The site's model (cached per Generators instance); medigan's id forms work."""
        mid = self.match_model_id(model_id)
        if mid not in self._models:
            self._models[mid] = self.site.model(mid)
        return self._models[mid]

    def add_all_model_executors(self) -> None:
        """Prepare every model this site can run (pinned, its code allowed); the others are
        skipped with a log line (medigan would download every package)."""
        for mid in list(self._entries()):
            try:
                self.add_model_executor(mid)
            except Exception as exc:  # noqa: BLE001 - one model that cannot run must not stop the others
                log.info("%s: not added (%s)", mid, exc)

    def add_model_executor(self, model_id: Any, install_dependencies: bool = False) -> None:
        self._install_note(install_dependencies)
        if not self.is_model_executor_already_added(model_id):
            self.model_executors.append(self.get_model(model_id))

    def is_model_executor_already_added(self, model_id: Any) -> bool:
        return self.find_model_executor_by_id(model_id) is not None

    def find_model_executor_by_id(self, model_id: Any) -> Model | None:
        mid = self.match_model_id(model_id)
        return next((m for m in self.model_executors if m.id == mid or m.ref == mid), None)

    def get_model_executor(self, model_id: Any, install_dependencies: bool = False) -> Model:
        self.add_model_executor(model_id, install_dependencies)
        found = self.find_model_executor_by_id(model_id)
        assert found is not None
        return found

    # --------------------------------------------------------------- generation ---

    def _split_kwargs(self, model: Model, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        declared = set((model.record.inputs.get("properties") or {}).keys())
        run = {k: v for k, v in kwargs.items() if k in RUN_KWARGS and k not in declared}
        params = {k: v for k, v in kwargs.items() if k not in run}
        return run, params

    def _array_kwargs(self, model: Model, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        """Take a model's array inputs out of ``params`` (medigan's translators name their
        folder by their ``medigan_arg``, e.g. ``input_path=``; any input also by its own
        name), with ``per_input``: ``({input: value}, per_input)``."""
        inputs: dict[str, Any] = {}
        for a in model.record.array_inputs:
            for key in dict.fromkeys([str(a.get("medigan_arg") or a["name"]), str(a["name"])]):
                if key in params:
                    inputs[str(a["name"])] = params.pop(key)
        per_input = int(params.pop("per_input", 1)) if model.record.array_inputs else 1
        return inputs, per_input

    def _seed(self, seed: Any) -> int:
        self.last_seed = fresh_seed() if seed is None else seed_value(seed)
        if seed is None:
            log.info("no seed given: drew seed %d (pass seed=%d to make these samples again)",
                     self.last_seed, self.last_seed)
        return self.last_seed

    def generate(self, model_id: Any, num_samples: int = 30, output_path: str | Path | None = None,
                 save_images: bool = True, is_gen_function_returned: bool = False,
                 install_dependencies: bool = False, **kwargs: Any) -> Any:
        """Generate ``num_samples`` samples with a model, as medigan does.

        ``save_images=True`` writes them to ``output_path`` (default: a new folder
        ``output/<model_id>/<time>/`` per call) as medigan names them
        (``batch_<i // 32>_<i % 32>.png``; a second output adds ``_<output name>``) with
        a ``synthmed.json`` provenance sidecar, and returns None (as medigan);
        ``save_images=False`` returns a list of samples (numpy arrays; tuples in record
        output order when a model has several outputs).

        ``seed``: sample i uses seed ``seed + i``; without it a fresh seed is drawn,
        recorded in the sidecar and in :attr:`last_seed`. ``install_dependencies`` is
        accepted: synthmed never installs into this environment (warned once). Other
        keywords are the model's parameters (checked against its inputs), plus
        ``batch_size``, ``device``, ``mode``, ``format``, ``bit_depth``, ``outputs``,
        ``window``, ``timeout_s``, ``chunk_size`` (seeds per call of a medigan-1 package),
        ``png_compress_level``, ``writers`` (as :meth:`synthmed.site.Model.generate_to`),
        ``layout`` ("medigan", default, or "synthmed": ``<output>/<index>.png``) and
        ``progress``. A folder that holds samples of another run is refused, never overwritten.
        A model with array inputs takes them by name, a medigan translator by its folder
        argument (``input_path=FOLDER``), read and checked before any model code runs;
        sample i takes input ``i // per_input``, and ``num_samples`` may not exceed the
        inputs times ``per_input``.
        """
        if is_gen_function_returned:
            return self.get_generate_function(model_id, num_samples, output_path, save_images=save_images,
                                               install_dependencies=install_dependencies, **kwargs)
        self._install_note(install_dependencies)
        model = self.get_model(model_id)
        run, params = self._split_kwargs(model, kwargs)
        inputs, per_input = self._array_kwargs(model, params)
        seed = self._seed(run.pop("seed", None))
        fmt = run.pop("format", None)
        bit_depth = run.pop("bit_depth", None)
        bar = progress_bar(run.pop("progress", self.progress), model.ref)
        selected = run.pop("outputs", None)
        window = run.pop("window", None)
        layout = run.pop("layout", "medigan")
        writing = {k: run.pop(k) for k in ("png_compress_level", "writers") if k in run}
        chunk = run.pop("chunk_size", None)
        if chunk is not None:
            run["medigan_chunk"] = chunk
        owned = bool(run)  # a copy with other options, closed after this call
        if run:
            model = model.with_options(**run)
        try:
            if not save_images:
                samples = model.sample(num_samples, seed=seed, per_input=per_input, **params, **inputs)
                return to_medigan_list(samples, model.outputs)
            folder = Path(output_path) if output_path is not None else mc.default_output_path(model.id)
            result = model.generate_to(folder, num_samples, format=fmt or "auto", seed=seed, bit_depth=bit_depth,
                                       progress=bar, outputs=selected, window=window, layout=layout, **writing,
                                       inputs=inputs or None, per_input=per_input, **params)
        finally:
            if owned:
                model.close()
        log.info("%s: %d samples in %s (%d written, %d already there; first seed %d)", model.ref, num_samples,
                 folder, result.written, result.skipped, seed)
        self.last_output_path = folder
        return None

    def get_generate_function(self, model_id: Any, num_samples: int = 30, output_path: str | Path | None = None,
                              install_dependencies: bool = False, **kwargs: Any) -> Callable[..., Any]:
        """A reusable function ``fn(**overrides)`` bound to the model (loaded once), with this
        call's arguments as defaults (medigan's ``gen``). Without a ``seed`` each call draws a fresh one."""
        defaults = {"num_samples": num_samples, "output_path": output_path, **kwargs}
        self._install_note(install_dependencies)
        self.get_model(model_id)  # resolve and fetch now: errors surface here, not later

        def generate_function(**overrides: Any) -> Any:
            args = {**defaults, **overrides}
            return self.generate(model_id, **args)

        generate_function.__name__ = f"generate_{str(model_id).replace('-', '_').replace('.', '_')}"
        return generate_function

    def _dataset_spec(self, model: Model, num_samples: int, chunk_size: int | None) -> Any:
        return model.for_run(num_samples, chunk_size).spec()

    def get_as_torch_dataset(self, model_id: Any, num_samples: int = 100, install_dependencies: bool = False,
                             transform: Callable[..., Any] | None = None, *, seed: int | None = None,
                             item_format: str = "medigan", chunk_size: int | None = None,
                             **kwargs: Any) -> "Dataset":  # type: ignore[type-arg]
        """A map-style torch Dataset of ``num_samples`` samples: item i is made from seed
        ``seed + i`` (a fresh seed when none is given, in :attr:`last_seed` and the
        dataset's ``seed``). Items are medigan's ``{"sample": ndarray[, "mask": ...]}``
        (``item_format="synthmed"``: one tensor per output plus ``index`` and ``seed``)."""
        from .datasets import SyntheticDataset

        self._install_note(install_dependencies)
        model = self.get_model(model_id)
        return SyntheticDataset(self._dataset_spec(model, num_samples, chunk_size), num_samples,
                                seed=self._seed(seed), params=kwargs, transform=transform, item_format=item_format)

    def get_as_torch_dataloader(self, dataset: Any = None, model_id: Any = None, num_samples: int = 1000,
                                install_dependencies: bool = False, transform: Callable[..., Any] | None = None,
                                batch_size: int | None = None, shuffle: bool | None = None, sampler: Any = None,
                                batch_sampler: Any = None, num_workers: int | None = None, collate_fn: Any = None,
                                pin_memory: bool | None = None, drop_last: bool | None = None,
                                timeout: float | None = None, worker_init_fn: Any = None,
                                prefetch_factor: int | None = None, persistent_workers: bool | None = None, *,
                                seed: int | None = None, item_format: str = "medigan", chunk_size: int | None = None,
                                **kwargs: Any) -> "DataLoader":  # type: ignore[type-arg]
        """A DataLoader streaming samples (seeds sharded across workers); or, with
        ``dataset``, a plain DataLoader over it (medigan's meaning). A model id given as
        the first argument (a string or an int is never a dataset) is taken as ``model_id``.
        DataLoader arguments left as None are not passed (torch's defaults apply).
        Without ``seed`` every epoch draws fresh seeds (``loader.dataset.epoch_seeds``
        lists them); with one, every epoch gives the same samples. Other keywords are the
        model's parameters (and torch's ``multiprocessing_context``, ``generator``)."""
        from torch.utils.data import DataLoader

        from .datasets import make_dataloader

        given: dict[str, Any] = {
            "sampler": sampler, "batch_sampler": batch_sampler, "collate_fn": collate_fn, "pin_memory": pin_memory,
            "drop_last": drop_last, "timeout": timeout, "worker_init_fn": worker_init_fn,
            "prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers,
            **{k: kwargs.pop(k) for k in ("multiprocessing_context", "generator", "pin_memory_device") if k in kwargs}}
        loader_kwargs = {k: v for k, v in given.items() if v is not None}
        if isinstance(dataset, (str, int)) and not isinstance(dataset, bool):
            if model_id is not None:
                raise ConfigError(f"get_as_torch_dataloader: got a model id twice ({dataset!r} and {model_id!r})",
                                  hint="pass dataset=<a torch Dataset> or model_id=<id>, not both as ids")
            dataset, model_id = None, dataset
        basic: dict[str, Any] = {k: v for k, v in (("batch_size", batch_size), ("shuffle", shuffle),
                                                   ("num_workers", num_workers)) if v is not None}
        if dataset is not None:
            return DataLoader(dataset, **basic, **loader_kwargs)
        if model_id is None:
            raise ConfigError("get_as_torch_dataloader needs a dataset or a model_id")
        if shuffle:
            log.info("shuffle is ignored for a generated stream: every sample is fixed by its seed")
        self._install_note(install_dependencies)
        model = self.get_model(model_id)
        if seed is not None:
            self._seed(seed)
        return make_dataloader(self._dataset_spec(model, num_samples, chunk_size), num_samples, seed=seed,
                               batch_size=batch_size or 1, num_workers=num_workers or 0, params=kwargs,
                               transform=transform, item_format=item_format, **loader_kwargs)

    def visualize(self, model_id: Any, slider_grouper: int = 10, auto_close: bool = False,
                  install_dependencies: bool = False, *, num_samples: int = 16, output_path: str | Path | None = None,
                  seed: int | None = 0, outputs: Any = None, side_by_side: bool = False, overlay: bool = True,
                  window: Any = None, progress: ProgressArg = None, **kwargs: Any) -> Path:
        """Write a grid of samples to a PNG (default ``output/<model_id>-grid.png``) and
        return its path. medigan opens an interactive window instead (warned once;
        ``slider_grouper`` and ``auto_close`` have no meaning here). ``outputs``,
        ``side_by_side``, ``overlay`` and ``window`` as :func:`synthmed.datasets.visualize`;
        other keywords are the model's parameters."""
        from .datasets import visualize

        mc.warn_once("visualize", "visualize: synthmed writes a PNG grid of samples and returns its path "
                     "(medigan opens an interactive window)")
        self._install_note(install_dependencies)
        model = self.get_model(model_id)
        path = Path(output_path) if output_path is not None else Path("output") / f"{model.id}-grid.png"
        bar = progress_bar(self.progress if progress is None else progress, f"{model.ref} grid")
        return visualize(model.for_run(num_samples).spec(), path, num_samples, seed=self._seed(seed), params=kwargs,
                         outputs=outputs, side_by_side=side_by_side, overlay=overlay, window=window, progress=bar)

    # ------------------------------------------------------ testing, contributing ---

    def add_model_contributor(self, model_id: str, init_py_path: str | Path | None = None) -> ModelContributor:
        existing = self.get_model_contributor_by_id(model_id)
        if existing is not None:
            log.warning("%s: a model contributor exists already; returning it", model_id)
            return existing
        contributor = ModelContributor(str(model_id), init_py_path)
        self.model_contributors.append(contributor)
        return contributor

    def get_model_contributor_by_id(self, model_id: str) -> ModelContributor | None:
        return next((c for c in self.model_contributors if c.model_id == str(model_id)), None)

    def _contributor(self, model_id: str) -> ModelContributor:
        c = self.get_model_contributor_by_id(model_id)
        if c is None:
            raise ConfigError(f"{model_id}: no model contributor for this id",
                              hint="add one first: add_model_contributor(model_id, init_py_path)")
        return c

    def add_metadata_from_file(self, model_id: str, metadata_file_path: str | Path) -> dict[str, Any]:
        """Read the contributor's medigan metadata (JSON) and return it."""
        c = self._contributor(model_id)
        try:
            data = json.loads(Path(metadata_file_path).read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the metadata file {metadata_file_path}: {exc}",
                              hint="give medigan's metadata.json ({model_id: {execution, selection, description}})") from exc
        if not isinstance(data, dict) or not isinstance(data.get(c.model_id), dict):
            raise ConfigError(f"{metadata_file_path}: metadata must be a JSON object with an entry {c.model_id!r}")
        weights = mc.find_weights_path(data, c.model_id, c.package_path, Path(metadata_file_path))
        if weights is None:
            raise ConfigError(f"{c.model_id}: no weights file named by the metadata (model_name + extension) in "
                              f"{c.package_path} or beside {metadata_file_path}",
                              hint="put the weights in the package folder, as medigan expects")
        data[c.model_id].setdefault("execution", {})["package_link"] = str(weights.parent)
        c.package_path = weights.parent
        c.metadata = data
        return data

    def add_metadata_from_input(self, model_id: str, model_weights_name: str, model_weights_extension: str,
                                generate_method_name: str, dependencies: list[str],
                                fill_more_fields_interactively: bool = True, output_path: str | Path = "config") -> dict[str, Any]:
        """The contributor's medigan metadata from the essential fields, written to
        ``output_path/<model_id>.json`` and returned. synthmed does not ask for more fields
        interactively (warned once): fill them in the file."""
        if fill_more_fields_interactively:
            mc.warn_once("interactive", "add_metadata_from_input: synthmed does not prompt for more fields; "
                         "edit the written metadata file instead")
        c = self._contributor(model_id)
        entry = {"execution": {"package_name": model_id, "package_link": str(c.package_path or ""),
                               "model_name": model_weights_name, "extension": model_weights_extension,
                               "dependencies": list(dependencies),
                               "generate_method": {"name": generate_method_name,
                                                   "args": {"base": ["model_file", "num_samples", "output_path",
                                                                     "save_images"], "custom": {}}}},
                 "selection": {"performance": {}, "use_cases": [], "organ": [], "modality": [], "tags": []},
                 "description": {"title": model_id, "version": "0.0.1"}}
        data = {model_id: entry}
        out = Path(output_path)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{model_id}.json").write_text(json.dumps(data, indent=2) + "\n", "utf-8")
        c.metadata = data
        return data

    def push_to_zenodo(self, model_id: str, zenodo_access_token: str, creator_name: str = "unknown name",
                       creator_affiliation: str = "unknown affiliation", model_description: str = "", *,
                       zenodo_host: str | None = None) -> str:
        """Upload the contributor's package (a reproducible zip) to Zenodo (``zenodo_host``,
        default the site's ``sources.zenodo_host``) and return its ``zenodo:<record>/<file>``
        source; pinning and publishing go through an index (warned once)."""
        mc.warn_once("push_to_zenodo", "push_to_zenodo: synthmed uploads a reproducible zip; the model is "
                     "published by a pull request to an index (`synthmed contribute`), not by the upload itself")
        c = self._contributor(model_id)
        if c.package_path is None or not c.package_path.is_dir():
            raise ConfigError(f"{model_id}: the contributor has no package folder ({c.package_path})",
                              hint="add_model_contributor(model_id, init_py_path=<its __init__.py>)")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="synthmed-push-") as work:
            zip_path = Path(work) / f"{model_id}.zip"
            reproducible_zip(c.package_path, zip_path)
            record = {"id": model_id, "version": "0.0.1", "title": model_id, "summary": model_description or model_id,
                      "authors": [{"name": creator_name, "affiliation": creator_affiliation}]}
            host = zenodo_host or self.site.settings.sources.zenodo_host
            return upload_zenodo(zip_path, record, host=host, token=zenodo_access_token)

    def push_to_github(self, model_id: str, github_access_token: str | None = None, package_link: str | None = None,
                       creator_name: str = "", creator_affiliation: str = "", model_description: str = "",
                       *, index: str | Path | None = None, version: str = "0.0.1") -> Any:
        """medigan opens a GitHub issue; synthmed contributes through an index instead: the
        contributor's package and record go onto a branch of the index at ``index`` (a git
        checkout), ready for a pull request (warned once). Returns the contribution's result."""
        mc.warn_once("push_to_github", "push_to_github: synthmed opens no GitHub issue; it commits the record on a "
                     "branch of the index you give (index=<checkout>), for a pull request")
        if index is None:
            raise ConfigError(f"{model_id}: push_to_github needs index=<a git checkout of the index to contribute to>",
                              hint="or run `synthmed contribute PACKAGE --index <checkout>`")
        c = self._contributor(model_id)
        record, problems = self._metadata_record(model_id, c.metadata or {})
        if record is None:
            raise ConfigError(f"{model_id}: the contributor's metadata cannot be read: {'; '.join(problems)}")
        return contribute(c.package_path or ".", model_id=model_id.lower(), version=version, metadata=record,
                          index=index, store="index")

    def test_model(self, model_id: Any, is_local_model: bool = True, overwrite_existing_metadata: bool = False,
                   store_new_config: bool = True, num_samples: int = 3, install_dependencies: bool = False,
                   **kwargs: Any) -> Any:
        """Test a model: a local contributor's package (medigan's default) through the
        same test a contribution gets, or the site's model (``synthmed test``'s checks:
        shapes, determinism, ...). Returns the test result (medigan returns None and
        raises on failure; synthmed raises ModelRunError when the test fails)."""
        self._install_note(install_dependencies)
        contributor = self.get_model_contributor_by_id(str(model_id)) if is_local_model else None
        if contributor is not None:
            record, problems = self._metadata_record(str(model_id), contributor.metadata or {})
            if record is None:
                raise ConfigError(f"{model_id}: the contributor's metadata cannot be read: {'; '.join(problems)}")
            if store_new_config:
                self.add_model_to_config(model_id, record, True, overwrite_existing_metadata)
            tested = test_package_dir(contributor.package_path or ".", metadata=record, model_id=str(record["id"]))
            result = tested.result
        else:
            report_dir = kwargs.pop("report_dir", None)
            kwargs.setdefault("num_samples", num_samples)
            result = test_ref(self.match_model_id(model_id), self.site.settings,
                              report_dir=Path(report_dir) if report_dir else None, **kwargs)
        if getattr(result, "status", None) == "failed":
            raise ModelRunError(f"{model_id}: the model test failed: {getattr(result, 'reason', '')}",
                                hint="see the report (report_dir=...) for each check")
        return result

    def contribute(self, model_id: Any = None, init_py_path: str | Path | None = None,
                   github_access_token: str | None = None, zenodo_access_token: str | None = None,
                   metadata_file_path: str | Path | None = None, model_weights_name: str | None = None,
                   model_weights_extension: str | None = None, generate_method_name: str | None = None,
                   dependencies: list[str] | None = None, fill_more_fields_interactively: bool = True,
                   overwrite_existing_metadata: bool = False, output_path: str | Path = "config",
                   creator_name: str = "unknown name", creator_affiliation: str = "unknown affiliation",
                   model_description: str = "", install_dependencies: bool = False, **kwargs: Any) -> Any:
        """Package, test and submit a model. medigan's arguments map onto synthmed's
        contribution (warned once): the metadata (``metadata_file_path``, else made from
        ``model_weights_name``... as :meth:`add_metadata_from_input`) becomes a record, the
        package folder of ``init_py_path`` is tested, uploaded (to Zenodo with
        ``zenodo_access_token``, else into the index) and committed on a branch of the index
        given as ``index=`` for a pull request; no GitHub issue. synthmed's own form,
        ``contribute(package_dir=..., model_id=..., version=..., metadata=..., index=...)``,
        works as ``synthmed contribute``."""
        self._install_note(install_dependencies)
        if "package_dir" in kwargs:  # synthmed's form
            return contribute(kwargs.pop("package_dir"), model_id=model_id, **kwargs)
        mc.warn_once("contribute", "contribute: synthmed contributes through an index pull request (index=...), "
                     "not a GitHub issue; with zenodo_access_token the package is uploaded to Zenodo")
        if model_id is None or init_py_path is None:
            raise ConfigError("contribute needs model_id and init_py_path (medigan's form), or package_dir=, "
                              "model_id=, version=, metadata=, index= (synthmed's)")
        mid = str(model_id)
        contributor = self.add_model_contributor(mid, init_py_path)
        if metadata_file_path is not None:
            self.add_metadata_from_file(mid, metadata_file_path)
        elif model_weights_name and model_weights_extension and generate_method_name:
            self.add_metadata_from_input(mid, model_weights_name, model_weights_extension, generate_method_name,
                                         list(dependencies or []), fill_more_fields_interactively, output_path)
        record, problems = self._metadata_record(mid, contributor.metadata or {})
        if record is None:
            raise ConfigError(f"{mid}: the metadata cannot be read: {'; '.join(problems)}",
                              hint="give metadata_file_path=<medigan metadata.json>")
        if model_description:
            record["summary"] = model_description
        index = kwargs.pop("index", None)
        if index is None:
            raise ConfigError(f"{mid}: contribute needs index=<a git checkout of the index to contribute to>",
                              hint="synthmed publishes through an index pull request, not a GitHub issue")
        store = "zenodo" if zenodo_access_token else kwargs.pop("store", "index")
        return contribute(contributor.package_path or ".", model_id=str(record["id"]),
                          version=str(kwargs.pop("version", record.get("version") or "0.0.1")), metadata=record,
                          index=index, store=store, zenodo_token_value=zenodo_access_token, **kwargs)

    # -------------------------------------------------------------------- misc ---

    def search(self, query: str = "", **filters: Any) -> list["CatalogEntry"]:
        return self.site.search(query, **filters)

    def close(self) -> None:
        for m in self._models.values():
            m.close()
        self._models.clear()
        self.model_executors.clear()
        self.site.close()


def to_medigan_list(samples: Mapping[str, np.ndarray], names: list[str]) -> list[Any]:
    """``{name: (n, ...)}`` -> medigan's list: arrays, or tuples of arrays for several outputs."""
    n = len(next(iter(samples.values()))) if samples else 0
    if len(names) == 1:
        return [samples[names[0]][i] for i in range(n)]
    return [tuple(samples[name][i] for name in names) for i in range(n)]
