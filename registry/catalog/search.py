"""How the models store finds the served versions matching a query: the free text made safe
for FTS5 (:func:`fts_query`), the filters, the runnable condition and the order, built
into one query over narrow columns that returns the page of row ids.

The order by a value (:class:`ScoreOrder`) is given by the caller: which values a ranking
compares is decided above the catalog (:mod:`synthmed.registry.measuring.ranking`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Collection, Mapping


@dataclass(frozen=True)
class ScoreOrder:
    """Order results by one value per model, best first; models without one come last.

    With ``values`` ((upstream, id) -> value), those values; without, the best value of
    ``metric`` with ``source`` that each record carries in its ``metrics``."""

    better: str  # lower | higher
    values: Mapping[tuple[str, str], float] | None = None
    metric: str = ""
    source: str = ""


def fts_query(text: str) -> str:
    """A free-text query made safe for FTS5: every word becomes a quoted prefix term.

    Punctuation never reaches FTS5 as syntax: ``mass-like`` becomes the phrase
    ``"mass-like"*`` (FTS5's tokenizer splits it inside the quotes), a stray double quote is
    doubled inside the term, and a term without a letter or digit (``*``) is dropped. Returns ``""``
    when nothing searchable is left. Control characters (NUL included, which SQLite would take
    as the end of the string) are bad input and count as spaces.
    """
    terms = []
    text = "".join(" " if ch < " " or ch == "\x7f" else ch for ch in text)
    for word in text.split():
        if not any(ch.isalnum() for ch in word):
            continue
        terms.append('"' + word.replace('"', '""') + '"*')
    return " ".join(terms)


@dataclass(frozen=True)
class Filters:
    """What a search keeps: facet values (``None`` or ``""``: any) and whether only what a
    site can run now (see :meth:`ModelStore.search <synthmed.registry.catalog.models.ModelStore.search>`)."""

    facets: Mapping[str, str | None]
    runnable: bool = False
    code_upstreams: Collection[str] | None = None
    held_blobs: Collection[str] | None = None


def _ordered(key: str, order: ScoreOrder, args: list[Any]) -> tuple[str, str, str]:
    """The select column, the joins and the ORDER BY term of a value order (their
    arguments go to the front of ``args``)."""
    sign = "" if order.better == "lower" else "-"
    if order.values is not None:
        frm = (f" LEFT JOIN models rm ON rm.pk = {key} LEFT JOIN (SELECT json_extract(value, '$[0]') AS up, "
               "json_extract(value, '$[1]') AS mid, json_extract(value, '$[2]') AS v FROM json_each(?)) rv "
               "ON rv.up = rm.upstream AND rv.mid = rm.id")
        args.insert(0, json.dumps([[u, i, v] for (u, i), v in order.values.items()]))
        return ", rv.v", frm, f"rv.v IS NULL, {sign}rv.v"
    agg = "min" if order.better == "lower" else "max"
    sub = f"(SELECT {agg}(r.value) FROM metrics r WHERE r.model = {key} AND r.name = ? AND r.source = ?)"
    args[0:0] = [order.metric, order.source]
    return f", {sub} AS rvalue", "", f"rvalue IS NULL, {sign}rvalue"


#: a ranked query whose text (or facet) matches at least this many rows walks the metric's
#: values in order (:func:`walk_query`) instead of sorting every match
WALK_FROM = 2000


def _driver(match: str, filters: Filters, args: list[Any], key: str | None = None) -> tuple[str, str, list[str]]:
    """The row key, the FROM clause and the WHERE terms of the served rows matching ``match``
    and ``filters`` (their arguments appended to ``args``). With ``key``, the rows are
    another table's (a walk over ``metrics``): they are checked against the text and the
    facets one by one."""
    if key is not None:
        frm, where = "", []
        if match:
            where.append(f"{key} IN (SELECT rowid FROM models_fts WHERE models_fts MATCH ?)")
            args.append(match)
    elif match:
        key, frm, where = "f.rowid", " FROM models_fts f", ["f.models_fts MATCH ?"]
        args.append(match)
    else:
        key, frm, where = "m.pk", " FROM models m", ["m.is_latest = 1"]
    for fname, value in filters.facets.items():
        if value:
            if match or frm == "":  # a lookup per row (with `IN`, FTS5 would run the MATCH once per listed id)
                where.append(f"EXISTS (SELECT 1 FROM facets WHERE field = ? AND value = ? AND model = {key})")
            else:  # the facet's rows drive the query
                where.append(f"{key} IN (SELECT model FROM facets WHERE field = ? AND value = ?)")
            args.extend([fname, value.strip().lower()])
    if filters.runnable:
        where.append(_runnable(key, filters, args))
    return key, frm, where


def page_query(match: str, filters: Filters, order: ScoreOrder | None, limit: int) -> tuple[str, list[Any]]:
    """The query for one ordered page of ``(row id, score)`` and its arguments.

    It touches only narrow columns (the record JSON is never carried through the sort; the
    FTS index holds only the latest non-yanked rows, so a text query needs no join to
    filter them); the caller reads the full rows of the page."""
    head: list[Any] = []
    args: list[Any] = []
    key, frm, where = _driver(match, filters, args)
    select = f"SELECT {key}"
    terms: list[str] = []
    if order is not None:
        col, joins, term = _ordered(key, order, head)
        select += col
        frm += joins
        terms.append(term)
    else:
        select += ", NULL"
    if match and order is None:  # bm25 costs a computation per match: only when it decides the order
        terms.append("f.rank")
    terms.append("m.id" if not match else key)
    args.append(int(limit))
    return f"{select}{frm} WHERE {' AND '.join(where)} ORDER BY {', '.join(terms)} LIMIT ?", head + args


def walk_query(match: str, filters: Filters, order: ScoreOrder, limit: int) -> tuple[str, list[Any]]:
    """The ranked page of :func:`page_query` for the records' own values (``order.values``
    is None), found by walking the metric's values best first through one partial index
    (each model's lowest, or highest, value of the metric and source, flagged when the
    record is written) and keeping the served rows that match, until ``limit`` are found:
    a few index probes per result when the query matches many rows. Same rows, same order
    (value, then row id for a text query or id without one); the models without a value,
    which come after these, are :func:`unvalued_query`'s."""
    flag, index, direction = (("lowest", "metrics_lowest", "") if order.better == "lower"
                              else ("highest", "metrics_highest", " DESC"))
    args: list[Any] = [order.metric, order.source]
    frm = f" FROM metrics r INDEXED BY {index}"
    where = ["r.name = ?", "r.source = ?", f"r.{flag} = 1"]
    tie = "r.model"
    if not match:
        frm += " JOIN models m ON m.pk = r.model"
        where.append("m.is_latest = 1")
        tie = "m.id"
    _, _, more = _driver(match, filters, args, key="r.model")
    args.append(int(limit))
    return (f"SELECT r.model, r.value{frm} WHERE {' AND '.join(where + more)} "
            f"ORDER BY r.value{direction}, {tie} LIMIT ?", args)


def unvalued_query(match: str, filters: Filters, order: ScoreOrder, limit: int) -> tuple[str, list[Any]]:
    """The served rows matching ``match`` and ``filters`` without a value of the order's
    metric and source, in :func:`page_query`'s order (after every row with a value)."""
    args: list[Any] = []
    key, frm, where = _driver(match, filters, args)
    where.append(f"NOT EXISTS (SELECT 1 FROM metrics r WHERE r.model = {key} AND r.name = ? AND r.source = ?)")
    args.extend([order.metric, order.source, int(limit)])
    return f"SELECT {key}, NULL{frm} WHERE {' AND '.join(where)} ORDER BY {'m.id' if not match else key} LIMIT ?", args


def candidates_query(match: str, filters: Filters) -> tuple[str, list[Any]] | None:
    """A query counting (up to :data:`WALK_FROM`) the rows a ranked search would sort: the
    text's matches, or the smallest facet's rows; None when nothing narrows the served rows."""
    if match:
        return "SELECT count(*) FROM (SELECT 1 FROM models_fts WHERE models_fts MATCH ? LIMIT ?)", [match, WALK_FROM]
    facets = [(f, v.strip().lower()) for f, v in filters.facets.items() if v]
    if not facets:
        return None
    counts = " UNION ALL ".join("SELECT count(*) AS n FROM (SELECT 1 FROM facets WHERE field = ? AND value = ? LIMIT ?)"
                                for _ in facets)
    return f"SELECT min(n) FROM ({counts})", [x for f, v in facets for x in (f, v, WALK_FROM)]


def _runnable(key: str, filters: Filters, args: list[Any]) -> str:
    cond = ["r.verified = 1", "r.status != 'yanked'"]
    if filters.code_upstreams is not None:
        cond.append("r.upstream IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(sorted(filters.code_upstreams)))
    if filters.held_blobs is not None:
        cond.append("r.sha256 IN (SELECT value FROM json_each(?)) AND coalesce(a.state, '') != 'corrupt'")
        args.append(json.dumps(sorted(filters.held_blobs)))
    else:
        cond.append("a.state = 'verified'")
    return (f"EXISTS (SELECT 1 FROM models r LEFT JOIN artefacts a ON a.sha256 = r.sha256 "
            f"WHERE r.pk = {key} AND {' AND '.join(cond)})")
