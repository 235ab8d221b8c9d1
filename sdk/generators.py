"""``Generators``: medigan's one-line API on a synthmed site.

A medigan user changes one import::

    from synthmed import Generators
    generators = Generators()
    generators.generate(model_id="00001_dcgan_mmg_calc_roi", num_samples=10)

Method names and meanings follow medigan (``find_matching_models_by_values``,
``rank_models_by_performance``, ``generate``, ``get_as_torch_dataloader``, ...). What
differs underneath: models come from the site's catalog, are verified against their
pinned sha256, never install packages into your environment (a model whose
requirements clash runs in a worker process with its own environment), and every
sample is reproducible from its seed (``seed=`` keyword, default 0).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from synthmed.registry.contribute import contribute
from synthmed.registry.errors import ConfigError, ModelNotFound
from synthmed.registry.modeltest_site import test_ref
from synthmed.registry.ranking import ranked_values

from .progress import ProgressArg, progress_bar
from .site import Model, Site, seed_value

if TYPE_CHECKING:  # pragma: no cover
    from torch.utils.data import DataLoader, Dataset

    from synthmed.registry.catalog import CatalogEntry

log = logging.getLogger(__name__)

#: keyword arguments of generate() that synthmed takes for itself, unless the model's
#: inputs declare a parameter of that name
RUN_KWARGS = ("seed", "batch_size", "device", "mode", "format", "bit_depth", "outputs", "window", "timeout_s",
              "progress")


@dataclass
class ModelMatchCandidate:
    """A model that matched a value search (medigan's class of the same name)."""

    model_id: str
    ref: str
    matched_values: list[str] = field(default_factory=list)
    matched_entries: list[tuple[str, str]] = field(default_factory=list)  # (json path, value)
    is_match: bool = True

    def __repr__(self) -> str:
        return f"ModelMatchCandidate(model_id={self.model_id!r}, matched_values={self.matched_values})"


def _walk(data: Any, path: str = "$") -> Iterable[tuple[str, str, bool]]:
    """(json path, text, is_key) for every key and scalar value of a record."""
    if isinstance(data, Mapping):
        for k, v in data.items():
            yield f"{path}.{k}", str(k), True
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk(v, f"{path}[{i}]")
    elif data is not None:
        yield path, str(data), False


class Generators:
    """medigan's ``Generators``, on a synthmed site (``Site()`` by default)."""

    def __init__(self, site: Site | str | Path | None = None, *, offline: bool | None = None,
                 device: str | None = None, mode: str | None = None, progress: ProgressArg = None,
                 **medigan_kwargs: Any) -> None:
        if medigan_kwargs:
            log.debug("ignoring medigan-only arguments: %s", ", ".join(medigan_kwargs))
        self.site = site if isinstance(site, Site) else Site(site, offline=offline, device=device, mode=mode,
                                                             progress=progress)
        #: progress bars (generate, visualize, fetches): None on a terminal only, False never, True always
        self.progress: ProgressArg = progress if not isinstance(site, Site) or progress is not None else site.progress
        self._models: dict[str, Model] = {}

    def __repr__(self) -> str:
        return f"Generators(site={self.site!r})"

    # ------------------------------------------------------------------ config ---

    def list_models(self) -> list[str]:
        """The model ids this site serves (latest version of each)."""
        seen: list[str] = []
        for e in self.site.list_models():
            if e.id not in seen:
                seen.append(e.id)
        return seen

    def get_config_by_id(self, model_id: str, config_key: str | None = None) -> Any:
        """The model's record, or the part below ``config_key`` (dotted, e.g. ``package.format``)."""
        data: Any = dict(self.site.record(model_id).data)
        if not config_key:
            return data
        for part in config_key.split("."):
            if isinstance(data, Mapping) and part in data:
                data = data[part]
            elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
                data = data[int(part)]
            else:
                raise KeyError(f"{model_id}: the record has no {config_key!r} (stopped at {part!r})")
        return data

    # ---------------------------------------------------------------- selection ---

    def find_matching_models_by_values(self, values: list[str] | str, target_values_operator: str = "AND",
                                       are_keys_also_matched: bool = False,
                                       is_case_sensitive: bool = False) -> list[ModelMatchCandidate]:
        """Models whose record contains the values (a value matches a field that equals
        it or holds it as a whole word or phrase); ``AND`` needs every value, ``OR`` any,
        ``XOR`` exactly one."""
        vals = [values] if isinstance(values, str) else [str(v) for v in values]
        op = target_values_operator.upper()
        if op not in {"AND", "OR", "XOR"}:
            raise ConfigError(f"target_values_operator must be AND, OR or XOR, not {target_values_operator!r}")
        flags = 0 if is_case_sensitive else re.IGNORECASE
        patterns = {v: re.compile(r"(?<![0-9A-Za-z])" + re.escape(v) + r"(?![0-9A-Za-z])", flags) for v in vals}
        out = []
        for entry in self.site.list_models():
            matched: list[str] = []
            entries: list[tuple[str, str]] = []
            fields = [(p, t) for p, t, is_key in _walk(dict(entry.record.data)) if are_keys_also_matched or not is_key]
            for v in vals:
                hits = [(p, t) for p, t in fields if patterns[v].search(t)]
                if hits:
                    matched.append(v)
                    entries.extend(hits[:5])
            ok = (len(matched) == len(vals)) if op == "AND" else (len(matched) >= 1) if op == "OR" else (len(matched) == 1)
            if ok and vals:
                out.append(ModelMatchCandidate(entry.id, entry.qualified_ref, matched, entries))
        return out

    def rank_models_by_performance(self, model_ids: list[str] | None = None, metric: str = "SSIM",
                                   order: str | None = None) -> list[dict[str, Any]]:
        """``[{"model_id": ..., metric: value}, ...]`` best first (by the metric's ``better``
        direction), or in ``order`` ``"asc"``/``"desc"`` when given; models without the
        metric are left out. The values compared are of one basis only
        (:mod:`synthmed.registry.ranking`): this site's measurements under one comparability
        key, else the records' values of one source; each row says which (``basis``,
        ``key``, ``source``)."""
        entries = self.site.list_models()
        if model_ids is not None:
            wanted = {m.lower() for m in model_ids}
            entries = [e for e in entries if e.id in wanted]
        ranking, values = ranked_values(self.site.catalog, metric)
        log.info("rank_models_by_performance: %s", ranking.describe())
        rows: list[dict[str, Any]] = []
        directions = {ranking.better}
        for e in entries:
            v = values.get((e.upstream, e.id))
            if v is None:
                continue
            rows.append({"model_id": e.id, "ref": e.qualified_ref, metric: v, "better": ranking.better,
                         "basis": ranking.basis, "key": ranking.key, "source": ranking.source})
        if order is not None:
            if order not in ("asc", "desc"):
                raise ConfigError(f"order must be 'asc' or 'desc', not {order!r}")
            rows.sort(key=lambda r: r[metric], reverse=order == "desc")
        else:
            if len(directions) > 1:
                log.warning("metric %s is 'lower is better' in some records and 'higher' in others", metric)
            rows.sort(key=lambda r: r[metric] if r["better"] == "lower" else -r[metric])
        return rows

    def find_models_and_rank(self, values: list[str] | str, target_values_operator: str = "AND",
                             are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                             metric: str = "SSIM", order: str | None = None) -> list[dict[str, Any]]:
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if not matches:
            log.warning("no model matches %s", values)
            return []
        return self.rank_models_by_performance([m.model_id for m in matches], metric, order)

    def find_model(self, values: list[str] | str, target_values_operator: str = "AND",
                   are_keys_also_matched: bool = False, is_case_sensitive: bool = False) -> str:
        """The one model id matching the values; a clear error for none or several."""
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if not matches:
            raise ModelNotFound(f"no model matches {values!r}", hint="try fewer values, or target_values_operator='OR'")
        if len(matches) > 1:
            raise ModelNotFound(f"{len(matches)} models match {values!r}: {', '.join(m.model_id for m in matches)}",
                                hint="add values to narrow it down, or use find_models_and_rank()")
        return matches[0].model_id

    def find_model_and_generate(self, values: list[str] | str, target_values_operator: str = "AND",
                                are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                                num_samples: int = 30, output_path: str | Path | None = None,
                                is_gen_function_returned: bool = False, install_dependencies: bool = False,
                                **kwargs: Any) -> Any:
        model_id = self.find_model(values, target_values_operator, are_keys_also_matched, is_case_sensitive)
        return self.generate(model_id, num_samples, output_path, is_gen_function_returned=is_gen_function_returned,
                             install_dependencies=install_dependencies, **kwargs)

    def find_models_rank_and_generate(self, values: list[str] | str, target_values_operator: str = "AND",
                                      are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                                      metric: str = "SSIM", order: str | None = None, num_samples: int = 30,
                                      output_path: str | Path | None = None, is_gen_function_returned: bool = False,
                                      install_dependencies: bool = False, **kwargs: Any) -> Any:
        ranked = self.find_models_and_rank(values, target_values_operator, are_keys_also_matched, is_case_sensitive,
                                           metric, order)
        if not ranked:
            raise ModelNotFound(f"no model matches {values!r} and has a {metric!r} metric",
                                hint="adjust the values or the metric")
        best = ranked[0]
        log.info("generating with the best-ranked model %s (%s = %s)", best["ref"], metric, best[metric])
        return self.generate(best["model_id"], num_samples, output_path,
                             is_gen_function_returned=is_gen_function_returned,
                             install_dependencies=install_dependencies, **kwargs)

    # --------------------------------------------------------------- generation ---

    def get_model(self, model_id: str) -> Model:
        """The site's model (cached per Generators instance)."""
        if model_id not in self._models:
            self._models[model_id] = self.site.model(model_id)
        return self._models[model_id]

    def _split_kwargs(self, model: Model, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        declared = set((model.record.inputs.get("properties") or {}).keys())
        run = {k: v for k, v in kwargs.items() if k in RUN_KWARGS and k not in declared}
        params = {k: v for k, v in kwargs.items() if k not in run}
        return run, params

    def generate(self, model_id: str, num_samples: int = 30, output_path: str | Path | None = None,
                 save_images: bool = True, is_gen_function_returned: bool = False,
                 install_dependencies: bool = False, **kwargs: Any) -> Any:
        """Generate ``num_samples`` samples with a model, as medigan does.

        ``save_images=True`` writes them to ``output_path`` (default ``output/<model_id>``)
        and returns that folder; ``save_images=False`` returns a list of samples (numpy
        arrays; tuples in record output order when a model has several outputs).
        ``install_dependencies`` is accepted for medigan compatibility: synthmed never
        installs into the current environment; a model whose requirements are not met
        here runs in a worker with its own environment. Other keyword arguments are the
        model's parameters (checked against its inputs), plus ``seed`` (default 0),
        ``batch_size``, ``device``, ``mode``, ``format``, ``bit_depth``, ``outputs`` and
        ``window`` (as :meth:`synthmed.site.Model.generate_to`), and ``progress`` (a bar on
        stderr when it is a terminal; ``progress=False`` for none, see :mod:`synthmed.progress`).
        """
        if is_gen_function_returned:
            return self.get_generate_function(model_id, num_samples, output_path, save_images=save_images, **kwargs)
        model = self.get_model(model_id)
        run, params = self._split_kwargs(model, kwargs)
        seed = seed_value(run.pop("seed", 0))
        fmt = run.pop("format", None)
        bit_depth = run.pop("bit_depth", None)
        bar = progress_bar(run.pop("progress", self.progress), model.ref)
        selected = run.pop("outputs", None)
        window = run.pop("window", None)
        if run:
            model = model.with_options(**run)
        if not save_images:
            samples = model.sample(num_samples, seed=seed, **params)
            return to_medigan_list(samples, model.outputs)
        folder = Path(output_path) if output_path is not None else Path("output") / model.id
        result = model.generate_to(folder, num_samples, format=fmt or "auto", seed=seed, bit_depth=bit_depth,
                                   progress=bar, outputs=selected, window=window, **params)
        log.info("%s: %d samples in %s (%d written, %d already there)", model.ref, num_samples, folder,
                 result.written, result.skipped)
        return folder

    def get_generate_function(self, model_id: str, num_samples: int = 30, output_path: str | Path | None = None,
                              install_dependencies: bool = False, **kwargs: Any) -> Callable[..., Any]:
        """A reusable function ``fn(num_samples=..., output_path=..., save_images=..., **params)``
        bound to the model (loaded once), with this call's arguments as defaults."""
        defaults = {"num_samples": num_samples, "output_path": output_path, **kwargs}
        self.get_model(model_id)  # resolve and fetch now: errors surface here, not later

        def generate_function(**overrides: Any) -> Any:
            args = {**defaults, **overrides}
            return self.generate(model_id, **args)

        generate_function.__name__ = f"generate_{model_id.replace('-', '_').replace('.', '_')}"
        return generate_function

    def get_as_torch_dataset(self, model_id: str, num_samples: int = 1000, install_dependencies: bool = False,
                             transform: Callable[[Any], Any] | None = None, seed: int = 0,
                             **kwargs: Any) -> "Dataset":  # type: ignore[type-arg]
        """A map-style torch Dataset: item i is the sample of seed ``seed + i``, as a dict of
        tensors (one per output) with ``index`` and ``seed``."""
        from .datasets import SyntheticDataset

        model = self.get_model(model_id)
        return SyntheticDataset(model.spec(), num_samples, seed=seed, params=kwargs, transform=transform)

    def get_as_torch_dataloader(self, dataset: Any = None, model_id: str | None = None, num_samples: int = 1000,
                                install_dependencies: bool = False, transform: Callable[[Any], Any] | None = None,
                                batch_size: int = 1, shuffle: bool = False, num_workers: int = 0,
                                seed: int = 0, **kwargs: Any) -> "DataLoader":  # type: ignore[type-arg]
        """A DataLoader streaming samples (seeds sharded across workers); or, with
        ``dataset``, a plain DataLoader over it (medigan's meaning). A model id given as
        the first argument (a string is never a dataset) is taken as ``model_id``."""
        from torch.utils.data import DataLoader

        from .datasets import make_dataloader

        loader_keys = {"sampler", "batch_sampler", "collate_fn", "pin_memory", "drop_last", "timeout",
                       "worker_init_fn", "prefetch_factor", "persistent_workers", "multiprocessing_context",
                       "generator"}
        loader_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in loader_keys}
        if isinstance(dataset, str):
            if model_id is not None:
                raise ConfigError(f"get_as_torch_dataloader: got a model id twice ({dataset!r} and {model_id!r})",
                                  hint="pass dataset=<a torch Dataset> or model_id=<id>, not both as ids")
            dataset, model_id = None, dataset
        if dataset is not None:
            return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, **loader_kwargs)
        if model_id is None:
            raise ConfigError("get_as_torch_dataloader needs a dataset or a model_id")
        if shuffle:
            log.info("shuffle is ignored for a generated stream: every sample is fixed by its seed")
        model = self.get_model(model_id)
        return make_dataloader(model.spec(), num_samples, seed=seed, batch_size=batch_size, num_workers=num_workers,
                               params=kwargs, transform=transform, **loader_kwargs)

    def visualize(self, model_id: str, num_samples: int = 16, output_path: str | Path | None = None,
                  seed: int = 0, *, outputs: Any = None, side_by_side: bool = False, overlay: bool = True,
                  window: Any = None, progress: ProgressArg = None, **kwargs: Any) -> Path:
        """Write a grid of samples to a PNG (default ``output/<model_id>-grid.png``) and return its path;
        ``outputs``, ``side_by_side``, ``overlay`` and ``window`` as :func:`synthmed.datasets.visualize`,
        ``progress``: a bar on stderr when it is a terminal (None), never (False), always (True);
        other keywords are the model's parameters."""
        from .datasets import visualize

        model = self.get_model(model_id)
        path = Path(output_path) if output_path is not None else Path("output") / f"{model.id}-grid.png"
        bar = progress_bar(self.progress if progress is None else progress, f"{model.ref} grid")
        return visualize(model.spec(), path, num_samples, seed=seed, params=kwargs, outputs=outputs,
                         side_by_side=side_by_side, overlay=overlay, window=window, progress=bar)

    # ------------------------------------------------------ testing, contributing ---

    def test_model(self, model_id: str, **kwargs: Any) -> Any:
        """Run the model's test (shapes, determinism, ...); see ``synthmed test``."""
        report_dir = kwargs.pop("report_dir", None)
        return test_ref(model_id, self.site.settings, report_dir=Path(report_dir) if report_dir else None, **kwargs)

    def contribute(self, *args: Any, **kwargs: Any) -> Any:
        """Package, test and submit a model; see ``synthmed contribute``."""
        return contribute(*args, **kwargs)

    # -------------------------------------------------------------------- misc ---

    def search(self, query: str = "", **filters: Any) -> list["CatalogEntry"]:
        return self.site.search(query, **filters)

    def close(self) -> None:
        for m in self._models.values():
            m.close()
        self._models.clear()
        self.site.close()

    def __len__(self) -> int:
        return len(self._models)


def to_medigan_list(samples: Mapping[str, np.ndarray], names: list[str]) -> list[Any]:
    """``{name: (n, ...)}`` -> medigan's list: arrays, or tuples of arrays for several outputs."""
    n = len(next(iter(samples.values()))) if samples else 0
    if len(names) == 1:
        return [samples[names[0]][i] for i in range(n)]
    return [tuple(samples[name][i] for name in names) for i in range(n)]
