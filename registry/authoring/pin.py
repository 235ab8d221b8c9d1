"""``synthmed index pin ID@VERSION``: download a record's artefact, hash it, write the pin.

``index:`` sources are read from the index working tree (the artefact may not be
committed yet). The record file keeps every other field; it is rewritten with a
2-space indent and a trailing newline.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .. import atomic
from ..errors import ArtefactNotFound, ConfigError, ModelNotFound, RecordError
from ..record_paths import MODELS_DIR, find_record, versions_of
from ..records import load_record, validate_data
from ..settings import Settings
from ..artefacts.sources.base import SourceContext, is_loopback
from ..artefacts.store import Store

log = logging.getLogger(__name__)


def split_pin_ref(ref: str) -> tuple[str, str]:
    """``[UPSTREAM/]ID@VERSION`` -> ``(ID, VERSION)``; the version is required."""
    if "@" not in ref:
        raise ConfigError(f"{ref!r} names no version", hint="write ID@VERSION, e.g. toy-gan@1.0.0")
    model_id, version = ref.rsplit("@", 1)
    if "/" in model_id:  # an upstream-qualified ref: the index folder is given separately
        model_id = model_id.rsplit("/", 1)[1]
    if not model_id or not version:
        raise ConfigError(f"{ref!r} is not ID@VERSION", hint="write ID@VERSION, e.g. toy-gan@1.0.0")
    return model_id, version


def _not_in_index(index_dir: Path, model_id: str, version: str) -> ModelNotFound:
    """What to say when ``models/<id>/<version>.json`` is not in the index folder."""
    models = index_dir / MODELS_DIR
    if not models.is_dir():
        return ModelNotFound(f"{index_dir} is not an index folder (no {MODELS_DIR}/ in it)",
                             hint="pass --index with the folder that holds models/ (the default is ./index)")
    versions = sorted(versions_of(index_dir, model_id))
    if versions:
        return ModelNotFound(f"{index_dir}: no version {version} of {model_id!r} ({models / model_id / version}.json)",
                             hint=f"versions in this index: {', '.join(versions)}")
    return ModelNotFound(f"{index_dir}: no model {model_id!r} ({models / model_id} does not exist)",
                         hint=f"model ids are the folder names under {models}/ (or the names before '@' in a "
                              "sharded index)")


def _insecure(uri: str, settings: Settings) -> bool:
    """Plain http to another machine: anyone on the path could choose the pinned bytes."""
    if uri.startswith("http://"):
        return not is_loopback(urlsplit(uri).hostname)
    if uri.startswith("zenodo:") and settings.sources.zenodo_host.startswith("http://"):
        return not is_loopback(urlsplit(settings.sources.zenodo_host).hostname)
    return False


def pin_record(index_dir: Path, ref: str, settings: Settings, *, force: bool = False) -> dict[str, Any]:
    """Download the artefact of ``ref`` from its sources, hash it, write sha256 and size
    into the record file. An already pinned record is re-verified against its pin (use
    ``force`` to replace a wrong pin). Returns ``{"id", "version", "sha256", "size", "source"}``.
    The blob lands in the site's store, ready to use."""
    index_dir = Path(index_dir)
    model_id, version = split_pin_ref(ref)
    path = find_record(index_dir, model_id, version)
    if path is None:
        raise _not_in_index(index_dir, model_id, version)
    record = load_record(path)
    text = path.read_text("utf-8")
    data = json.loads(text)
    ctx = SourceContext(settings=settings, index_dir=index_dir)
    store = Store(settings.store_dir)
    if record.sha256 and not force:
        res = store.fetch(record.sha256, record.size, record.sources, ctx)
        log.info("%s is already pinned; its sources still deliver %s", record.ref, res.sha256)
        return {"id": model_id, "version": version, "sha256": res.sha256, "size": res.size, "source": res.source,
                "changed": False}
    sources = [u for u in record.sources if not _insecure(u, settings)]
    if not sources:
        raise ArtefactNotFound(
            f"{record.ref} ({path}): every source is plain http, which cannot be trusted for a first download",
            hint="pin from an https://, zenodo:, dvc: or index: source (the pin is what later downloads are checked "
                 "against, so its bytes must arrive with integrity)")
    for u in record.sources:
        if u not in sources:
            log.warning("%s: skipping %s for pinning: plain http to a non-loopback host", record.ref, u)
    res = store.add_from_sources(sources, ctx)
    art = data["package"]["artefact"]
    new_art: dict[str, Any] = {"sha256": res.sha256, "size": res.size}
    new_art.update({k: v for k, v in art.items() if k not in ("sha256", "size")})
    data["package"]["artefact"] = new_art
    errors, _warnings = validate_data(data, str(path))
    if errors:
        raise RecordError(errors)
    atomic.write_json(path, data, ensure_ascii=False)
    log.info("pinned %s to sha256:%s (%d bytes, from %s)", record.ref, res.sha256, res.size, res.source)
    return {"id": model_id, "version": version, "sha256": res.sha256, "size": res.size, "source": res.source,
            "changed": art.get("sha256") != res.sha256 or art.get("size") != res.size}
