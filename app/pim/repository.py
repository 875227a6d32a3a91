"""All SQL of the PIM mirror (``pim_product``, ``pim_product_model``)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Text, and_, case, cast, func, or_, select, update
from sqlalchemy.orm import Session

from app.db import affected, among, dialect_insert, is_postgres
from app.pgbulk import execute_many
from app.pim.models import MirrorClock, PimDefinitions, PimProduct, PimProductModel
from app.pim.product import Product

# A NUL character as JSON escapes it (what the mirror's json column holds verbatim).
ESCAPED_NUL = "\\u0000"


@dataclass(slots=True)
class MirrorRow:
    identifier: str
    raw: dict[str, Any]
    content_hash: str
    change_seq: int
    enabled: bool
    # built from ``raw`` by the first channel that maps it, reused by the others
    product: Product | None = None
    # the stored JSON holds an escaped NUL (``\u0000``): PostgreSQL's jsonb and text refuse
    # it, so publishing looks for the value (app.textcheck); False for nearly every product
    suspect: bool = False


def change_token(session: Session) -> int:
    """This transaction's position in the mirror's change log.

    Taken from a one-row counter that the transaction keeps locked until it commits, so
    positions are handed out in commit order: a reader that stops at the counter's committed
    value never skips a change that commits later with a smaller number. (PostgreSQL's
    transaction ids would avoid the lock but need the cluster-wide oldest running
    transaction as the reader's limit: one long transaction in any database of the cluster
    would then hold every channel's delta back.) Mirror writers are short and few (the PIM
    read, events, replays), so queueing on the counter costs little.
    """
    token = session.info.get("mirror_change_token")
    if token is None:
        insert = dialect_insert(session)
        stmt = insert(MirrorClock).values(id=1, value=1)
        updated = session.execute(
            stmt.on_conflict_do_update(
                index_elements=[MirrorClock.id], set_={"value": MirrorClock.value + 1}
            ).returning(MirrorClock.value)
        ).scalar_one()
        token = int(updated)
        session.info["mirror_change_token"] = token
    return token


def high_watermark(session: Session) -> int:
    """Every change with a position below this has committed: safe to read up to it."""
    value = session.execute(select(MirrorClock.value).where(MirrorClock.id == 1)).scalar()
    return int(value or 0) + 1


def first_change_not_read_by(
    session: Session, from_seq: int, to_seq: int, run_id: uuid.UUID
) -> int:
    """The first change position in ``[from_seq, to_seq)`` that the run ``run_id`` did not make
    by reading the product (another writer's: a delta, an event, a removal); ``to_seq`` when
    every change in the range is the run's own. A full sync's channel marker moves up to it:
    what the full sync read it also published, so the next delta need not decide it again."""
    foreign = or_(
        PimProduct.last_seen_run.is_(None),
        PimProduct.last_seen_run != run_id,
        PimProduct.removed_at.is_not(None),
    )
    first = session.execute(
        select(func.min(PimProduct.change_seq)).where(
            PimProduct.change_seq >= from_seq, PimProduct.change_seq < to_seq, foreign
        )
    ).scalar()
    return to_seq if first is None else int(first)


def upsert_products(
    session: Session,
    products: Sequence[tuple[Product, str]],
    run_id: uuid.UUID | None,
    now: datetime,
) -> set[str]:
    """Write a page of products into the mirror; returns the identifiers whose content changed,
    and those a product's new identifier retired (see ``_retire_renamed``).

    Every product is marked seen (``last_seen_at``/``last_seen_run``), changed or not. Content
    is replaced only when the hash differs and the payload is not older than what the mirror
    holds (by the PIM's ``updated``), so overlap re-reads and late events change nothing.
    """
    if not products:
        return set()
    token = change_token(session)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for product, digest in products:
        if product.identifier in seen:  # a page repeating a product: keep the last copy
            rows = [r for r in rows if r["identifier"] != product.identifier]
        seen.add(product.identifier)
        rows.append(
            {
                "identifier": product.identifier,
                "uuid": product.uuid,
                "family": product.family,
                "parent_key": product.parent.casefold() if product.parent else None,
                "root_parent_key": product.root_parent.casefold() if product.root_parent else None,
                "enabled": product.enabled,
                "updated": product.updated,
                "raw": product.raw,
                "encoded": product.encoded,
                "content_hash": digest,
                "change_seq": token,
                "ingested_at": now,
                "last_seen_at": now,
                "last_seen_run": run_id,
                "removed_at": None,
            }
        )
    retired = _retire_renamed(session, rows, now)
    if is_postgres(session):
        return _upsert_products_pg(session, rows, token) | retired
    insert = dialect_insert(session)
    stmt = insert(PimProduct)
    t = PimProduct.__table__
    ex = stmt.excluded
    changed = and_(
        or_(t.c.content_hash != ex.content_hash, t.c.removed_at.is_not(None)),
        or_(t.c.updated.is_(None), ex.updated.is_(None), ex.updated >= t.c.updated),
    )

    def pick(column: str) -> Any:
        return case((changed, ex[column]), else_=t.c[column])

    stmt = stmt.on_conflict_do_update(
        index_elements=[t.c.identifier],
        set_={
            "uuid": pick("uuid"),
            "family": pick("family"),
            "parent_key": pick("parent_key"),
            "root_parent_key": pick("root_parent_key"),
            "enabled": pick("enabled"),
            "updated": pick("updated"),
            "raw": pick("raw"),
            "content_hash": pick("content_hash"),
            "change_seq": pick("change_seq"),
            "ingested_at": pick("ingested_at"),
            "removed_at": pick("removed_at"),
            "last_seen_at": ex.last_seen_at,
            "last_seen_run": ex.last_seen_run,
        },
    ).returning(t.c.identifier, t.c.change_seq)
    for r in rows:
        del r["encoded"]  # SQLite: SQLAlchemy's JSON type encodes `raw` itself
    result = session.execute(stmt, rows)
    return {ident for ident, seq in result.all() if seq == token} | retired


_CHANGED = (
    "((t.content_hash <> excluded.content_hash OR t.removed_at IS NOT NULL) AND "
    "(t.updated IS NULL OR excluded.updated IS NULL OR excluded.updated >= t.updated))"
)
_PICKED = (
    "uuid",
    "family",
    "parent_key",
    "root_parent_key",
    "enabled",
    "updated",
    "raw",
    "content_hash",
    "change_seq",
    "ingested_at",
    "removed_at",
)
# One pipelined statement per product (measured faster than COPY-to-stage-then-merge here,
# see app/pgbulk.py); content columns change only when the content did, `seen` always.
_UPSERT = (
    "INSERT INTO pim_product AS t (identifier, uuid, family, parent_key, root_parent_key, "
    "enabled, updated, raw, content_hash, change_seq, ingested_at, last_seen_at, "
    "last_seen_run, removed_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s, NULL) "
    "ON CONFLICT (identifier) DO UPDATE SET "
    + ", ".join(f"{c} = CASE WHEN {_CHANGED} THEN excluded.{c} ELSE t.{c} END" for c in _PICKED)
    + ", last_seen_at = excluded.last_seen_at, last_seen_run = excluded.last_seen_run "
    "RETURNING t.identifier, t.change_seq"
)


def _retire_renamed(session: Session, rows: list[dict[str, Any]], now: datetime) -> set[str]:
    """Akeneo keys a product by its uuid; its identifier (the SKU) can be renamed, or given to
    a product that had none (mirrored under its uuid until then). The row the mirror holds
    under the old identifier is then marked removed, with a new change_seq, so every channel
    disables the old SKU (at the next catch-up, or at once where the caller publishes what
    changed) instead of keeping it online beside the new one until a full sync."""
    new_identifier = {r["uuid"]: r["identifier"] for r in rows if r["uuid"]}
    if not new_identifier:
        return set()
    held = session.execute(
        select(PimProduct.identifier, PimProduct.uuid).where(
            among(session, PimProduct.uuid, list(new_identifier)),
            PimProduct.removed_at.is_(None),
        )
    ).all()
    old = sorted({ident for ident, u in held if ident != new_identifier[u]})
    return set(mark_removed(session, old, now))


def _upsert_products_pg(session: Session, rows: list[dict[str, Any]], token: int) -> set[str]:
    result = execute_many(
        session,
        _UPSERT,
        [
            (
                r["identifier"],
                r["uuid"],
                r["family"],
                r["parent_key"],
                r["root_parent_key"],
                r["enabled"],
                r["updated"],
                (r["encoded"] or orjson.dumps(r["raw"])).decode(),
                r["content_hash"],
                token,
                r["ingested_at"],
                r["last_seen_at"],
                r["last_seen_run"],
            )
            for r in rows
        ],
    )
    return {ident for ident, seq in result if seq == token}


def mark_seen(
    session: Session, identifiers: Iterable[str], run_id: uuid.UUID | None, now: datetime
) -> int:
    """Mark products seen without touching their content (e.g. a malformed payload of a
    product the mirror already holds: it still exists in the PIM, so it is no orphan)."""
    ids = list(identifiers)
    if not ids:
        return 0
    return affected(
        session,
        update(PimProduct)
        .where(PimProduct.identifier.in_(ids))
        .values(last_seen_at=now, last_seen_run=run_id),
    )


def current_hashes(session: Session, identifiers: Sequence[str]) -> dict[str, str]:
    """Content hash of each product the mirror holds (and has not marked removed)."""
    if not identifiers:
        return {}
    return {
        ident: digest
        for ident, digest in session.execute(
            select(PimProduct.identifier, PimProduct.content_hash).where(
                among(session, PimProduct.identifier, identifiers), PimProduct.removed_at.is_(None)
            )
        ).all()
    }


def heads(session: Session, identifiers: Sequence[str]) -> dict[str, Any]:
    """Each product's head (identifier, content_hash, change_seq, removed_at), without its
    payload: enough to tell a unit whose input did not change."""
    return {
        r.identifier: r
        for r in session.execute(
            select(
                PimProduct.identifier,
                PimProduct.content_hash,
                PimProduct.change_seq,
                PimProduct.removed_at,
            ).where(among(session, PimProduct.identifier, identifiers))
        ).all()
    }


def load_products(session: Session, identifiers: Sequence[str]) -> dict[str, MirrorRow]:
    if not identifiers:
        return {}
    # a scan of the stored text by the server, cheaper than walking every decoded value here
    position = func.strpos if is_postgres(session) else func.instr
    suspect = position(cast(PimProduct.raw, Text), ESCAPED_NUL) > 0
    rows = session.execute(
        select(
            PimProduct.identifier,
            PimProduct.raw,
            PimProduct.content_hash,
            PimProduct.change_seq,
            PimProduct.enabled,
            PimProduct.removed_at,
            suspect.label("suspect"),
        ).where(among(session, PimProduct.identifier, identifiers))
    ).all()
    return {
        r.identifier: MirrorRow(
            r.identifier, r.raw, r.content_hash, r.change_seq, r.enabled, suspect=bool(r.suspect)
        )
        for r in rows
        if r.removed_at is None
    }


def removed_identifiers(session: Session, identifiers: Sequence[str]) -> set[str]:
    if not identifiers:
        return set()
    return set(
        session.execute(
            select(PimProduct.identifier).where(
                among(session, PimProduct.identifier, identifiers),
                PimProduct.removed_at.is_not(None),
            )
        ).scalars()
    )


def changed_identifiers(
    session: Session, from_seq: int, to_seq: int, after: tuple[int, str] | None, limit: int
) -> list[tuple[int, str]]:
    """Identifiers changed with ``from_seq <= change_seq < to_seq``, keyset-paginated."""
    q = select(PimProduct.change_seq, PimProduct.identifier).where(
        PimProduct.change_seq >= from_seq, PimProduct.change_seq < to_seq
    )
    if after is not None:
        seq, ident = after
        q = q.where(
            or_(
                PimProduct.change_seq > seq,
                and_(PimProduct.change_seq == seq, PimProduct.identifier > ident),
            )
        )
    q = q.order_by(PimProduct.change_seq, PimProduct.identifier).limit(limit)
    return [(int(s), i) for s, i in session.execute(q).all()]


def all_identifiers(session: Session, after: str | None, limit: int) -> list[str]:
    """Every product in the mirror that the PIM still has, keyset-paginated by identifier."""
    q = select(PimProduct.identifier).where(PimProduct.removed_at.is_(None))
    if after is not None:
        q = q.where(PimProduct.identifier > after)
    return list(session.execute(q.order_by(PimProduct.identifier).limit(limit)).scalars())


def mark_removed(session: Session, identifiers: Sequence[str], now: datetime) -> list[str]:
    """The PIM deleted these products: keep the row (history), flag it, bump its change_seq."""
    if not identifiers:
        return []
    token = change_token(session)
    result = session.execute(
        update(PimProduct)
        .where(PimProduct.identifier.in_(list(identifiers)), PimProduct.removed_at.is_(None))
        .values(removed_at=now, change_seq=token)
        .returning(PimProduct.identifier)
    )
    return list(result.scalars())


def variants_of_model(session: Session, code: str) -> list[str]:
    key = code.casefold()
    return list(
        session.execute(
            select(PimProduct.identifier).where(
                or_(PimProduct.parent_key == key, PimProduct.root_parent_key == key),
                PimProduct.removed_at.is_(None),
            )
        ).scalars()
    )


def upsert_model(session: Session, raw: dict[str, Any], updated: datetime | None) -> None:
    code = str(raw["code"])
    insert = dialect_insert(session)
    stmt = insert(PimProductModel).values(
        code_key=code.casefold(),
        code=code,
        parent_key=(raw.get("parent") or "").casefold() or None,
        raw=raw,
        updated=updated,
        removed_at=None,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[PimProductModel.code_key],
        set_={
            "code": stmt.excluded.code,
            "parent_key": stmt.excluded.parent_key,
            "raw": stmt.excluded.raw,
            "updated": stmt.excluded.updated,
            "removed_at": None,
        },
    )
    session.execute(stmt)


def mirror_count(session: Session) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(PimProduct).where(PimProduct.removed_at.is_(None))
        ).scalar_one()
    )


def save_definitions(session: Session, data: dict[str, Any], source: str, now: datetime) -> str:
    """Store the catalog definitions if they changed; returns their hash."""
    digest = hashlib.blake2b(
        orjson.dumps(data, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()
    current = session.get(PimDefinitions, 1)
    if current is None:
        session.add(PimDefinitions(id=1, data=data, hash=digest, source=source, fetched_at=now))
    elif current.hash != digest:
        current.data, current.hash, current.source, current.fetched_at = data, digest, source, now
    else:
        current.fetched_at = now
    session.flush()
    return digest


def definitions_hash(session: Session) -> str | None:
    return session.execute(select(PimDefinitions.hash).where(PimDefinitions.id == 1)).scalar()


def load_definitions(session: Session) -> tuple[dict[str, Any], str] | None:
    row = session.get(PimDefinitions, 1)
    return None if row is None else (row.data, row.hash)


def definitions_fetched_at(session: Session) -> datetime | None:
    """When the stored definitions were last read from the PIM (None: never)."""
    return session.execute(select(PimDefinitions.fetched_at).where(PimDefinitions.id == 1)).scalar()
