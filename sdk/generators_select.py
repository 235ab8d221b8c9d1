"""medigan's model selection methods of ``Generators``: selection criteria, key/value
look-ups, ranking by a metric and matching by values. Mixed into
:class:`synthmed.generators.Generators`; the rules themselves are medigan_compat's pure
functions, and which metric values a ranking compares is the registry's
(:mod:`synthmed.registry.measuring.ranking`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from synthmed.registry.measuring.ranking import ranked_values

from . import medigan_compat as mc
from .medigan_compat import ModelMatchCandidate

if TYPE_CHECKING:  # pragma: no cover
    from synthmed.registry.records import Record

    from .site import Site

log = logging.getLogger(__name__)


class SelectionMethods:
    """medigan's selection methods, over the site's catalog."""

    site: "Site"

    if TYPE_CHECKING:  # provided by Generators
        def match_model_id(self, model_id: Any) -> str: ...
        def _entries(self) -> dict[str, Any]: ...
        def _record(self, model_id: Any) -> "Record": ...
        def _medigan_ids(self) -> dict[str, str]: ...

    def _selections(self) -> dict[str, dict[str, Any]]:
        """{model id as medigan spells it: medigan selection dict} for every model of the
        site (the selection methods answer with medigan's ids). Models added with
        :meth:`add_model_to_config` are left out, as medigan's selection methods leave them
        out (its model selector keeps the models it started with)."""
        return {mc.medigan_id(e.record): mc.medigan_config(e.record)["selection"] for e in self._entries().values()}

    def _as_medigan(self, model_ids: list[Any]) -> list[str]:
        """medigan's spelling of each id given in any of its forms."""
        spelled = self._medigan_ids()
        return [spelled.get(mid, mid) for mid in (self.match_model_id(m) for m in model_ids)]

    def get_selection_criteria_by_id(self, model_id: Any, is_model_id_removed: bool = True) -> dict[str, Any]:
        """medigan's selection dict of one model (``{"model_id": ..., "selection": ...}``
        with ``is_model_id_removed=False``)."""
        record = self._record(model_id)
        sel = mc.medigan_config(record)["selection"]
        return sel if is_model_id_removed else {"model_id": mc.medigan_id(record), "selection": sel}

    def get_selection_criteria_by_ids(self, model_ids: list[Any] | None = None,
                                      are_model_ids_removed: bool = True) -> list[dict[str, Any]]:
        wanted = None if model_ids is None else set(self._as_medigan(model_ids))
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
        ids = None if model_ids is None else self._as_medigan(model_ids)
        # which values are compared is the registry's rule (synthmed.registry.measuring.ranking): one
        # basis only, this site's measurements under one comparability key, else the
        # records' values of one source; the order is medigan's
        ranking, values = ranked_values(self.site.catalog, metric)
        if ranking.basis == "none":  # a dotted medigan path (CLF.trained_on_fake.accuracy), or no such metric
            return mc.rank(self._selections(), metric, order, ids)
        log.info("rank_models_by_performance: %s", ranking.describe())
        chosen = {mc.medigan_id(e.record): {"performance": {metric: values[(e.upstream, e.id)]}}
                  for e in self._entries().values() if (e.upstream, e.id) in values}
        return mc.rank(chosen, metric, order, ids)

    def find_matching_models_by_values(self, values: list[Any] | str, target_values_operator: str = "AND",
                                       are_keys_also_matched: bool = False,
                                       is_case_sensitive: bool = False) -> list[ModelMatchCandidate]:
        """Models whose selection fields hold the values (a field equal to a value, or a
        list holding it, as medigan); ``AND`` needs every value, ``OR`` any, ``XOR`` one.
        medigan's whole-value rule: ``"fundus"`` does not match a modality ``"fundus
        photography"``; :meth:`search` (``synthmed search``) matches words."""
        refs = {mc.medigan_id(e.record): e.qualified_ref for e in self._entries().values()}
        return mc.find_matching(self._selections(), values, target_values_operator, are_keys_also_matched,
                                is_case_sensitive, refs)

    def find_models_and_rank(self, values: list[Any] | str, target_values_operator: str = "AND",
                             are_keys_also_matched: bool = False, is_case_sensitive: bool = False,
                             metric: str = "SSIM", order: str = "asc") -> list[dict[str, Any]]:
        """The models matching the values (medigan's whole-value rule, see
        :meth:`find_matching_models_by_values`) ranked by ``metric``."""
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if not matches:
            log.warning("no model matches %s: medigan's rule compares whole values (a field equal to each value); "
                        "g.search(...) or `synthmed search` matches words", values)
            return []
        ranked = self.rank_models_by_performance([m.model_id for m in matches], metric, order)
        if not ranked:
            log.warning("none of the %d matching models has a %r metric", len(matches), metric)
        return ranked

    def find_model(self, values: list[Any] | str, target_values_operator: str = "AND",
                   are_keys_also_matched: bool = False, is_case_sensitive: bool = False) -> str:
        """The one model id matching the values (synthmed's own id, as synthmed's API
        spells it; a clear error for none or several)."""
        matches = self.find_matching_models_by_values(values, target_values_operator, are_keys_also_matched,
                                                      is_case_sensitive)
        if len(matches) != 1:
            raise mc.no_single_model(values, matches)
        return self.match_model_id(matches[0].model_id)
