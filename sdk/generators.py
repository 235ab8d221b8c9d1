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

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from synthmed.registry.array_inputs import CheckedInputs, default_inputs
from synthmed.registry.errors import ConfigError, ModelNotFound
from synthmed.registry.authoring.medigan_import import convert_entry
from synthmed.registry.records import Record, validate_data

from . import medigan_compat as mc
from .generators_contribute import ContributorMethods, ModelContributor
from .generators_select import SelectionMethods
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


class Generators(SelectionMethods, ContributorMethods):
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

    def _medigan_ids(self) -> dict[str, str]:
        """{synthmed id: the id medigan spells} for every model of the site
        (:func:`synthmed.medigan_compat.medigan_id`)."""
        return {i: mc.medigan_id(e.record) for i, e in self._entries().items()}

    def list_models(self) -> list[str]:
        """The model ids this site serves (latest version of each) as medigan spells them
        (``00005_DCGAN_MMG_MASS_ROI``), plus any added this session."""
        ids = self._medigan_ids()
        return list(ids.values()) + [i for i in self._local_config if i not in ids]

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

    def _array_kwargs(self, model: Model, params: dict[str, Any], n: int) -> tuple[Any, int]:
        """Take a model's array inputs out of ``params`` (medigan's translators name their
        folder by their ``medigan_arg``, e.g. ``input_path=``; any input also by its own
        name), with ``per_input``: ``({input: value}, per_input)``. None given: the
        package's bundled examples where the record names them (``default``), cycled over
        the ``n`` samples as medigan's packages do (a :class:`CheckedInputs`)."""
        inputs: dict[str, Any] = {}
        for a in model.record.array_inputs:
            for key in dict.fromkeys([str(a.get("medigan_arg") or a["name"]), str(a["name"])]):
                if key in params:
                    inputs[str(a["name"])] = params.pop(key)
        per_input = int(params.pop("per_input", 1)) if model.record.array_inputs else 1
        if model.record.array_inputs and not inputs and per_input == 1:
            bundled = default_inputs(model.record, model.package.folder, n)
            if bundled is not None:
                log.info("%s: no input given: using the package's bundled examples (%s)", model.ref,
                         ", ".join(str(a.get("default")) for a in model.record.array_inputs))
                return bundled, 1
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
        model = self.get_model_executor(model_id)  # registered, as medigan does (len(g) counts it)
        run, params = self._split_kwargs(model, kwargs)
        inputs, per_input = self._array_kwargs(model, params, num_samples)
        seed = self._seed(run.pop("seed", None))
        writing = {k: run.pop(k) for k in ("format", "bit_depth", "outputs", "window", "layout", "png_compress_level",
                                           "writers") if k in run}
        writing["format"] = writing.get("format") or "auto"
        writing.setdefault("layout", "medigan")
        bar = progress_bar(run.pop("progress", self.progress), model.ref)
        chunk = run.pop("chunk_size", None)
        if chunk is not None:
            run["medigan_chunk"] = chunk
        owned = bool(run)  # a copy with other options, closed after this call
        if run:
            model = model.with_options(**run)
        try:
            if not save_images:
                given = dict(inputs.arrays) if isinstance(inputs, CheckedInputs) else inputs
                samples = model.sample(num_samples, seed=seed, per_input=per_input, **params, **given)
                return to_medigan_list(samples, model.outputs)
            folder = (Path(output_path) if output_path is not None
                      else mc.default_output_path(mc.medigan_id(model.record)))
            # the run's one request: the parameters, inputs and run options of this call
            request = model.request(folder, num_samples, seed=seed, progress=bar, inputs=inputs or None,
                                    per_input=per_input, **writing, **params)
            result = model.run(request)
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
        model = self.get_model_executor(model_id)
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
                                published: str | None = None, **kwargs: Any) -> "DataLoader":  # type: ignore[type-arg]
        """A DataLoader streaming samples (seeds sharded across workers); or, with
        ``dataset``, a plain DataLoader over it (medigan's meaning). A model id given as
        the first argument (a string or an int is never a dataset) is taken as ``model_id``.
        DataLoader arguments left as None are not passed (torch's defaults apply).
        Without ``seed`` every epoch draws fresh seeds (``loader.dataset.epoch_seeds``
        lists them); with one, every epoch gives the same samples. Other keywords are the
        model's parameters (and torch's ``multiprocessing_context``, ``generator``).
        ``published="ID@VERSION"``: a DataLoader over that published dataset's verified files
        instead (:class:`synthmed.published_torch.PublishedTorchDataset`, items as generated)."""
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
        if published is not None:
            if dataset is not None or model_id is not None or kwargs:
                raise ConfigError("get_as_torch_dataloader: published= takes no model, dataset or parameters")
            return DataLoader(self.site.dataset(published).torch_dataset(transform=transform), **basic,
                              **loader_kwargs)
        if dataset is not None:
            return DataLoader(dataset, **basic, **loader_kwargs)
        if model_id is None:
            raise ConfigError("get_as_torch_dataloader needs a dataset or a model_id")
        if shuffle:
            log.info("shuffle is ignored for a generated stream: every sample is fixed by its seed")
        self._install_note(install_dependencies)
        model = self.get_model_executor(model_id)
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
