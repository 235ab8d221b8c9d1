"""medigan's contribution and testing methods of ``Generators``: model contributors,
their metadata, uploads to Zenodo, ``push_to_github`` (a branch of an index), model tests
and ``contribute``. Mixed into :class:`synthmed.generators.Generators`; each maps medigan's
arguments onto synthmed's contribution workflow (:mod:`synthmed.registry.authoring.contribute`) and
says once where it differs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from synthmed.registry.authoring.contribute import contribute, reproducible_zip, test_package_dir, upload_zenodo
from synthmed.registry.errors import ConfigError, ModelRunError
from synthmed.registry.checks.modeltest_site import test_ref

from . import medigan_compat as mc

if TYPE_CHECKING:  # pragma: no cover
    from .site import Site

log = logging.getLogger(__name__)


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


class ContributorMethods:
    """medigan's contributor, metadata, upload, test and contribute methods."""

    site: "Site"
    model_contributors: list[ModelContributor]

    if TYPE_CHECKING:  # provided by Generators
        def match_model_id(self, model_id: Any) -> str: ...
        def _install_note(self, install_dependencies: bool) -> None: ...
        def _metadata_record(self, model_id: str, metadata: Mapping[str, Any]
                             ) -> tuple[dict[str, Any] | None, list[str]]: ...
        def add_model_to_config(self, model_id: Any, metadata: Mapping[str, Any], is_local_model: bool | None = None,
                                overwrite_existing_metadata: bool = False, store_new_config: bool = True) -> bool: ...

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
