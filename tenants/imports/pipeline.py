"""Running an import: file rows -> cleaned values -> COPY into a staging table -> set-based merge.

A reader thread streams the file (`reading.iter_rows`), cleans each row (`targets.RowCleaner`),
writes rejected rows with their reason to the import's rejected-rows CSV, and hands batches of
staged rows to the event loop through a small bounded queue, so memory stays flat whatever the
file's size and the file is read while PostgreSQL merges the previous batch (two cores, two
workers). Each batch is COPYed into a temporary staging table and merged by a handful of
set-based statements, never row by row:

1. match: each staged row finds the existing record with the same key (email, phone digits,
   name, domain) through the table's own index;
2. classify: create, update, skip (an existing duplicate when the choice is skip), dup (a
   duplicate of an earlier row of the file: the first row wins when skipping, the last when
   updating), scope (an existing record the actor may not edit), merge (a later row of the file
   updating a record this import created);
3. create: one INSERT ... SELECT that also journals each record in import_changes (and, for
   contacts, records the consent the file gives in consent_events);
4. update: one UPDATE ... FROM the staging table that changes only the fields the file gives
   (an empty cell leaves the field alone), journalling each changed field's value before and after.

Everything runs in the caller's transaction (`acting_as`): the job commits the import's records,
its journal, its audit entry and its final state together, or none of them. A check (dry run)
runs steps 1-2 only, keeping the keys it has seen in a temporary table so duplicates across
batches are still found, and writes nothing to the tenant's records.
"""

from __future__ import annotations

import asyncio
import csv
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kith.platform.access.session import TenantSession
from kith.platform.billing.limits import check_contact_capacity
from kith.tenants.exports.formats import BOM, safe_text
from kith.tenants.imports.reading import FileFacts, ImportFileError, iter_rows
from kith.tenants.imports.targets import ImportTarget, MatchKey, RowCleaner
from kith.tenants.records.custom import CustomField

BATCH_ROWS = 20_000
REJECTED_SAMPLE = 20
# columns whose staged and stored type is not text
_TYPES = {"tags": "text[]", "custom": "jsonb", "company_id": "bigint", "consent_at": "timestamptz",
          "unsubscribed_at": "timestamptz"}
_CONSENT_COLUMNS = ("marketing_consent", "consent_source", "consent_at", "unsubscribed_at")


class ImportCancelled(Exception):
    """Someone asked for the import to stop; everything it did is rolled back."""


@dataclass
class Counts:
    rows: int = 0
    valid: int = 0
    rejected: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    duplicates_in_file: int = 0
    out_of_scope: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class RunPlan:
    """What one run of an import needs to know."""

    import_id: int
    target: ImportTarget
    path: Path
    facts: FileFacts
    mapping: dict[int, str]
    custom: Sequence[CustomField]
    region: str | None
    match_key: str
    on_duplicate: str
    check_only: bool
    rejected_path: Path
    file_name: str = ""


@dataclass
class RunResult:
    counts: Counts
    rejected_sample: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


# progress(phase, rows_done) -> True when the run must stop (cancelled)
Progress = Callable[[str, int], Awaitable[bool]]


@dataclass
class _Batch:
    rows: list[tuple[Any, ...]]
    read: int  # rows read so far (valid and rejected)


class _Reader:
    """The reader thread: file rows in, staged batches and rejected rows out."""

    def __init__(self, plan: RunPlan, counts: Counts, sample: list[dict[str, Any]]) -> None:
        self.plan = plan
        self.counts = counts
        self.sample = sample
        self.queue: queue.Queue[_Batch | BaseException | None] = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"import-{plan.import_id}", daemon=True)

    def _put(self, item: _Batch | BaseException | None) -> None:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # handed to the event loop, which raises it there
            self._put(exc)
        else:
            self._put(None)

    def _read(self) -> None:
        plan, counts = self.plan, self.counts
        width = len(plan.facts.headers)
        cleaner = RowCleaner(plan.target, plan.mapping, plan.custom, plan.region, width)
        plan.rejected_path.parent.mkdir(parents=True, exist_ok=True)
        with plan.rejected_path.open("w", encoding="utf-8", newline="") as out:
            out.write(BOM)  # so Excel opens Chinese text in it correctly
            writer = csv.writer(out)
            writer.writerow([safe_text(h) for h in (*plan.facts.headers, "Line", "Reason")])
            batch: list[tuple[Any, ...]] = []
            for line, cells in iter_rows(plan.path, plan.facts):
                if self.stop.is_set():
                    return
                counts.rows += 1
                staged = cleaner.clean(cells)
                if isinstance(staged, str):
                    counts.rejected += 1
                    writer.writerow([*(safe_text(c) for c in cells), line, staged])
                    if len(self.sample) < REJECTED_SAMPLE:
                        self.sample.append({"line": line, "reason": staged, "cells": cells[:width + 2]})
                    continue
                counts.valid += 1
                batch.append((line, *staged))
                if len(batch) >= BATCH_ROWS:
                    self._put(_Batch(batch, counts.rows))
                    batch = []
            if batch:
                self._put(_Batch(batch, counts.rows))

    def batches(self) -> Iterator[Awaitable[_Batch | BaseException | None]]:
        while True:
            yield asyncio.to_thread(self.queue.get)


class _Sql:
    """The statements of one import, built once from its target, mapping and choices."""

    def __init__(self, plan: RunPlan, defaults: dict[str, str]) -> None:
        target = plan.target
        self.plan = plan
        self.table = target.table
        self.columns = target.columns
        mapped_fields = {name for name in plan.mapping.values()}
        if {"first_name", "last_name"} & mapped_fields:
            mapped_fields.add("name")
        self.mapped = [c for c in self.columns if any(f.column == c and f.name in mapped_fields
                                                      for f in target.fields)]
        self.has_custom = any(n.startswith("custom.") for n in plan.mapping.values())
        self.defaults = defaults
        key: MatchKey | None = target.key(plan.match_key) if plan.match_key else None
        self.key = key if plan.on_duplicate != "create" else None
        self.links_company = target.links_company and "company_name" in self.mapped
        self.consent = target.has_consent and "marketing_consent" in self.mapped

    def staging_ddl(self) -> str:
        cols = ", ".join(f"{c} {_TYPES.get(c, 'text')}" for c in self.columns)
        extra = ", company_id bigint" if self.plan.target.links_company else ""
        return (f"CREATE TEMPORARY TABLE import_stage (line integer PRIMARY KEY, {cols}, custom jsonb{extra},"
                " match_id bigint, match_owner bigint, seen boolean NOT NULL DEFAULT false, cls text)"
                " ON COMMIT DROP")

    def copy_columns(self) -> list[str]:
        return ["line", *self.columns, "custom"]

    def match(self) -> str:
        assert self.key is not None
        key, table = self.key, self.table
        staged = key.staged_sql
        record_column = f"r.{key.field}"
        # min(r.id + 0): a plain min(r.id) or ORDER BY id LIMIT 1 lets the planner walk the primary key
        # in id order hoping to meet a match early (measured: minutes on 100,000 contacts) instead of
        # looking the key up in its own index
        return (f"UPDATE import_stage s SET match_id = (SELECT min(r.id + 0) FROM {table} r"  # noqa: S608
                f" WHERE {key.record_sql} = {staged} AND {record_column} <> '')"
                f" WHERE s.{key.field} IS NOT NULL")

    def match_owners(self) -> str:
        return (f"UPDATE import_stage s SET match_owner = r.owner_id FROM {self.table} r"  # noqa: S608
                " WHERE r.id = s.match_id")

    def mark_created_here(self) -> str:
        # a match with a record created by an earlier batch of this import is a duplicate in the file
        return ("UPDATE import_stage s SET seen = true FROM import_changes c WHERE c.import_id = $1"
                " AND c.record_id = s.match_id AND c.action = 'created'")

    def mark_seen_in_check(self) -> str:
        assert self.key is not None
        return f"UPDATE import_stage s SET seen = true FROM import_seen k WHERE k.key = {self.key.staged_sql}"  # noqa: S608

    def remember_seen(self) -> str:
        assert self.key is not None
        return (f"INSERT INTO import_seen (key) SELECT DISTINCT {self.key.staged_sql} FROM import_stage s"  # noqa: S608
                f" WHERE s.cls = 'create' AND s.{self.key.field} IS NOT NULL ON CONFLICT DO NOTHING")

    def classify(self) -> str:
        """One statement: each staged row's class ($1: owners the actor may edit, NULL for all)."""
        if self.key is None:
            return "UPDATE import_stage SET cls = 'create'"
        staged = self.key.staged_sql
        order = "DESC" if self.plan.on_duplicate == "update" else "ASC"
        updating = self.plan.on_duplicate == "update"
        on_existing = "CASE WHEN d.rank = 1 THEN 'update' ELSE 'dup' END" if updating else "'skip'"
        on_seen = "CASE WHEN d.rank = 1 THEN 'merge' ELSE 'dup' END" if updating else "'dup'"
        return (
            "UPDATE import_stage s SET cls = CASE"  # noqa: S608
            f" WHEN s.seen THEN {on_seen}"
            " WHEN s.match_id IS NULL THEN CASE WHEN d.rank = 1 THEN 'create' ELSE 'dup' END"
            " WHEN $1::bigint[] IS NOT NULL AND (s.match_owner IS NULL OR NOT s.match_owner = ANY($1::bigint[]))"
            " THEN 'scope'"
            f" ELSE {on_existing} END"
            f" FROM (SELECT s.line, CASE WHEN s.{self.key.field} IS NULL THEN 1 ELSE row_number() OVER"
            f" (PARTITION BY {staged} ORDER BY s.line {order}) END AS rank FROM import_stage s) d"
            " WHERE d.line = s.line"
        )

    def link_companies(self) -> list[str]:
        return [
            "UPDATE import_stage s SET company_id = (SELECT min(c.id + 0) FROM companies c"
            " WHERE lower(c.name) = lower(s.company_name))"
            " WHERE s.company_name IS NOT NULL AND s.cls IN ('create', 'update', 'merge')",
            "UPDATE import_stage s SET company_name = c.name FROM companies c WHERE c.id = s.company_id",
        ]

    def _value(self, column: str) -> str:
        default = self.defaults.get(column)
        return f"coalesce(s.{column}, {default})" if default is not None else f"s.{column}"

    def insert(self) -> str:
        """Create the rows classed 'create' ($1 import id, $2 owner, $3 actor, $4 consent source, $5-$7
        the actor's kind, id and label for consent events)."""
        columns = [*self.columns, "custom", "owner_id", "created_by_id"]
        values = [*(self._value(c) for c in self.columns), "coalesce(s.custom, '{}'::jsonb)", "$2", "$3"]
        if self.plan.target.links_company:
            columns.append("company_id")
            values.append("s.company_id")
        if self.plan.target.has_consent:
            columns += ["consent_source", "consent_at", "unsubscribed_at"]
            values += ["CASE WHEN s.marketing_consent IS NULL THEN '' ELSE $4 END",
                       "CASE WHEN s.marketing_consent IS NULL THEN NULL ELSE now() END",
                       "CASE WHEN s.marketing_consent = 'withdrawn' THEN now() END"]
        events, returning = "", "id"
        if self.consent:
            # a new record's consent is the file's own (granted or withdrawn) or 'unknown' when it says nothing
            returning = "id, marketing_consent"
            events = (", events AS (INSERT INTO consent_events (contact_id, state, source, at, actor_kind, actor_id,"
                      " actor) SELECT m.id, m.marketing_consent, $4, now(), $5, $6, $7"
                      " FROM made m WHERE m.marketing_consent <> 'unknown')")
        return (
            f"WITH made AS (INSERT INTO {self.table} ({', '.join(columns)})"  # noqa: S608
            f" SELECT {', '.join(values)} FROM import_stage s WHERE s.cls = 'create' ORDER BY s.line"
            f" RETURNING {returning})"
            f"{events}"
            " INSERT INTO import_changes (import_id, record_id, action) SELECT $1, id, 'created' FROM made"
        )

    def _doc(self, alias: str, columns: Sequence[str]) -> str:
        return "jsonb_build_object(" + ", ".join(f"'{c}', {alias}.{c}" for c in columns) + ")"

    def update(self) -> str:
        """Change the fields the file gives of the rows classed 'update'/'merge' ($1 import id,
        $2 consent source, $3 actor kind, $4 actor id, $5 actor label). Returns the count changed."""
        t = self.table
        assign: dict[str, str] = {c: f"coalesce(s.{c}, r.{c})" for c in self.mapped}
        if self.has_custom:
            assign["custom"] = "r.custom || coalesce(s.custom, '{}'::jsonb)"
        if self.links_company:
            assign["company_id"] = "CASE WHEN s.company_name IS NULL THEN r.company_id ELSE s.company_id END"
        if self.consent:
            changed = "(s.marketing_consent IS NOT NULL AND s.marketing_consent <> r.marketing_consent)"
            assign["consent_source"] = f"CASE WHEN {changed} THEN $2 ELSE r.consent_source END"
            assign["consent_at"] = f"CASE WHEN {changed} THEN now() ELSE r.consent_at END"
            assign["unsubscribed_at"] = (f"CASE WHEN {changed} AND s.marketing_consent = 'withdrawn' THEN now()"
                                         f" WHEN {changed} THEN NULL ELSE r.unsubscribed_at END")
        tracked = list(assign)
        differs = (f"({', '.join(f'r.{c}' for c in tracked)}) IS DISTINCT FROM"
                   f" ({', '.join(assign[c] for c in tracked)})")
        sets = ", ".join(f"{c} = {v}" for c, v in assign.items())
        events = ""
        if self.consent:
            events = (", events AS (INSERT INTO consent_events (contact_id, state, source, at, actor_kind, actor_id,"
                      " actor) SELECT u.id, u.doc->>'marketing_consent', $2, now(), $3, $4, $5 FROM changed u"
                      " JOIN old o USING (id) WHERE u.doc->>'marketing_consent' IS DISTINCT FROM"
                      " o.doc->>'marketing_consent')")
        return (
            f"WITH old AS (SELECT r.id, {self._doc('r', tracked)} AS doc FROM {t} r"  # noqa: S608
            " JOIN import_stage s ON r.id = s.match_id WHERE s.cls IN ('update', 'merge')),"
            f" changed AS (UPDATE {t} r SET {sets}, updated_at = now() FROM import_stage s"
            f" WHERE r.id = s.match_id AND s.cls IN ('update', 'merge') AND {differs}"
            f" RETURNING r.id, {self._doc('r', tracked)} AS doc),"
            " journal AS (INSERT INTO import_changes (import_id, record_id, action, before, after)"
            " SELECT $1, u.id, 'updated',"
            " (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(o.doc) e WHERE e.value IS DISTINCT FROM"
            " u.doc -> e.key),"
            " (SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(u.doc) e WHERE e.value IS DISTINCT FROM"
            " o.doc -> e.key)"
            " FROM changed u JOIN old o USING (id)"
            " ON CONFLICT (import_id, record_id) DO UPDATE SET before = EXCLUDED.before || import_changes.before,"
            " after = import_changes.after || EXCLUDED.after WHERE import_changes.action = 'updated')"
            f"{events}"
            " SELECT count(*) AS changed FROM changed"
        )

    def lock_matches(self) -> str:
        # lock first, so the statement that reads the values before sees the latest committed ones
        return (f"SELECT count(*) FROM (SELECT 1 FROM {self.table} r JOIN import_stage s ON r.id = s.match_id"  # noqa: S608
                " WHERE s.cls IN ('update', 'merge') FOR UPDATE OF r) AS locked")

    def tally(self) -> str:
        return ("SELECT count(*) FILTER (WHERE cls = 'create') AS created,"
                " count(*) FILTER (WHERE cls IN ('update', 'merge')) AS updating,"
                " count(*) FILTER (WHERE cls = 'skip') AS skipped,"
                " count(*) FILTER (WHERE cls IN ('dup', 'merge')) AS dups,"
                " count(*) FILTER (WHERE cls = 'scope') AS scope FROM import_stage")


async def _column_defaults(session: TenantSession, table: str) -> dict[str, str]:
    rows = await session.tx.execute_query_dict(
        "SELECT column_name, column_default FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1", [table])
    return {r["column_name"]: r["column_default"] for r in rows if r["column_default"] is not None}


async def run_import(session: TenantSession, plan: RunPlan, progress: Progress) -> RunResult:
    """Run the import (or its check, with plan.check_only) inside the session's transaction.

    Raises ImportFileError for a file that cannot be read to its end, ImportCancelled when
    `progress` says stop, LimitExceeded when the plan's contact limit would be passed; the
    caller's transaction then rolls back whole."""
    started = time.perf_counter()
    tx = session.tx
    conn = tx._connection  # type: ignore[attr-defined]  # asyncpg's, for COPY
    sql = _Sql(plan, await _column_defaults(session, plan.target.table))
    counts = Counts()
    sample: list[dict[str, Any]] = []
    await tx.execute_query(sql.staging_ddl())
    if plan.check_only and sql.key is not None:
        await tx.execute_query("CREATE TEMPORARY TABLE import_seen (key text PRIMARY KEY) ON COMMIT DROP")
    owners = session.policy.owner_ids(plan.target.object_type)
    owner_list = sorted(owners) if owners is not None else None
    source = f"import #{plan.import_id}"
    reader = _Reader(plan, counts, sample)
    reader.thread.start()
    try:
        if await progress("reading", 0):
            raise ImportCancelled
        for pending in reader.batches():
            item = await pending
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            await conn.execute("TRUNCATE import_stage")
            await conn.copy_records_to_table("import_stage", records=item.rows, columns=sql.copy_columns())
            # a temporary table has no statistics until analyzed; with them the joins below are planned
            # for the batch's real size
            await conn.execute("ANALYZE import_stage")
            if sql.key is not None:
                await tx.execute_query(sql.match())
                await tx.execute_query(sql.match_owners())
                if plan.check_only:
                    await tx.execute_query(sql.mark_seen_in_check())
                else:
                    await tx.execute_query(sql.mark_created_here(), [plan.import_id])
            await tx.execute_query(sql.classify(), [owner_list] if sql.key is not None else [])
            tally = (await tx.execute_query_dict(sql.tally()))[0]
            counts.skipped += tally["skipped"]
            counts.duplicates_in_file += tally["dups"]
            counts.out_of_scope += tally["scope"]
            if plan.check_only:
                counts.created += tally["created"]
                counts.updated += tally["updating"]
                if sql.key is not None:
                    await tx.execute_query(sql.remember_seen())
            else:
                await _write_batch(session, sql, plan, tally, counts, source)
            if await progress("checking" if plan.check_only else "importing", item.read):
                raise ImportCancelled
    finally:
        reader.stop.set()
        await asyncio.to_thread(reader.thread.join)
    if not plan.check_only:
        await progress("finishing", counts.rows)
    return RunResult(counts=counts, rejected_sample=sample, seconds=time.perf_counter() - started)


async def _write_batch(session: TenantSession, sql: _Sql, plan: RunPlan, tally: dict[str, int], counts: Counts,
                       source: str) -> None:
    tx, actor = session.tx, session.actor
    if tally["created"]:
        if plan.target.object_type == "contacts":
            await check_contact_capacity(actor.tenant_id, tally["created"], tx)
        if sql.links_company:
            for statement in sql.link_companies():
                await tx.execute_query(statement)
        args: list[Any] = [plan.import_id, actor.identity_id, actor.identity_id]
        if plan.target.has_consent:
            args.append(source)
        if sql.consent:
            args += [actor.kind, "" if actor.identity_id is None else str(actor.identity_id), actor.label]
        await tx.execute_query(sql.insert(), args)
        counts.created += tally["created"]
    if tally["updating"]:
        if sql.links_company and not tally["created"]:
            for statement in sql.link_companies():
                await tx.execute_query(statement)
        await tx.execute_query(sql.lock_matches())
        update_args: list[Any] = [plan.import_id]
        if sql.consent:
            update_args += [source, actor.kind, "" if actor.identity_id is None else str(actor.identity_id),
                            actor.label]
        changed = (await tx.execute_query_dict(sql.update(), update_args))[0]["changed"]
        counts.updated += changed
        counts.unchanged += tally["updating"] - changed


__all__ = ["BATCH_ROWS", "Counts", "ImportCancelled", "ImportFileError", "Progress", "RunPlan", "RunResult",
           "run_import"]
