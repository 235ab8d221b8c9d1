"""The mirror job's part for published datasets (#24): which datasets the site keeps a
verified copy of (``[mirror] datasets`` and ``dataset_ids`` in site.toml), and fetching
their artefacts through the same store and copy pipeline as model packages
(:func:`~synthmed.registry.packages.fetch_data_result`, the packages module's path for
data artefacts, with the upstream's source context: site mirrors first, then the record's
sources, streamed, hashed, quarantined or promoted). A dataset artefact is data, never
code: it is not unpacked here (``synthmed dataset get`` and the loaders unpack a verified
copy where they need one)."""

from __future__ import annotations

import fnmatch
import logging
from typing import Callable

from synthmed.registry.catalog import Catalog, CatalogEntry, DatasetEntry
from synthmed.registry.errors import BlobCorrupt, SynthmedError
from synthmed.registry.packages import fetch_data_result
from synthmed.registry.redact import redact_text, redact_url
from synthmed.registry.settings import MirrorPolicy, Settings
from synthmed.registry.artefacts.store import Store

#: the models' mirror policy (daemon/jobs.py ``selected``: its one owner)
ModelSelected = Callable[[MirrorPolicy, CatalogEntry], bool]

log = logging.getLogger(__name__)


def dataset_selected(policy: MirrorPolicy, entry: DatasetEntry, catalog: Catalog,
                     model_selected: ModelSelected) -> bool:
    """Whether the site's policy mirrors this dataset: ``all``, ``none``, ``select`` (an id
    pattern of ``dataset_ids`` matches) or ``models`` (its model version is one the site
    mirrors, or an id pattern matches)."""
    if policy.datasets == "all":
        return True
    if policy.datasets == "none":
        return False
    if any(fnmatch.fnmatchcase(entry.id, p.lower()) for p in policy.dataset_ids):
        return True
    if policy.datasets == "select":
        return False
    try:
        model = catalog.models.resolve(entry.model_ref, allow_yanked=True)
    except SynthmedError:
        return False
    return model.status != "yanked" and model_selected(policy, model)


def mirror_datasets(settings: Settings, catalog: Catalog, started: str, model_selected: ModelSelected, *,
                    progress: Callable[[str], None], failures: list[str]) -> tuple[int, int, int]:
    """Fetch and verify the artefact of every selected, non-yanked dataset; returns
    (selected, fetched, failed); each failing ref is appended to ``failures``. A failing
    dataset never stops the others."""
    store = Store(settings.store_dir)
    states = {a["sha256"]: a["state"] for a in catalog.artefacts.rows()}
    chosen = [e for e in catalog.datasets.list_datasets(all_versions=True)
              if e.status != "yanked" and dataset_selected(settings.mirror, e, catalog, model_selected)]
    fetched = failed = 0
    done: set[str] = set()
    for e in chosen:
        sha, size = e.record.sha256, int(e.record.artefact["size"])
        if sha in done:
            continue
        done.add(sha)
        if states.get(sha) == "verified" and store.has(sha):
            continue
        progress(f"mirror: dataset {e.qualified_ref}")
        try:
            got = fetch_data_result(sha, size, list(e.record.artefact["sources"]), settings, upstream=e.upstream,
                                    index_repo=e.index_repo, index_commit=e.index_commit,
                                    index_subfolder=e.index_subfolder)
            fetched += got.source != "store"
            with catalog.transaction():
                catalog.artefacts.set_artefact(sha, state="verified", size=size, source=redact_url(got.source))
        except Exception as exc:  # one dataset never stops the others
            failed += 1
            failures.append(e.qualified_ref)
            reason = redact_text(" ".join(str(getattr(exc, "message", exc)).split())) or type(exc).__name__
            log.warning("mirror: dataset %s failed: %s", e.qualified_ref, reason)
            with catalog.transaction():
                catalog.artefacts.set_artefact(sha, state="corrupt" if isinstance(exc, BlobCorrupt) else "missing",
                                               size=size, reason=reason)
                catalog.jobs.record_run("mirror", "failed", upstream=e.upstream, subject=e.qualified_ref,
                                        reason=f"{type(exc).__name__}: {reason}", started=started)
    return len(done), fetched, failed
