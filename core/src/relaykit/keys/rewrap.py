"""Moving sealed rows onto the primary key, online; and counting which key wraps which rows.

A rewrap run ends with one ``keys.rewrapped`` event on the audit trail's ``system`` chain
(:mod:`relaykit.audit`) with its counts: the run moves rows in many transactions of its own,
so the event is one more at the end, not part of each batch's."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa

from relaykit import audit
from relaykit.errors import RelaykitError
from relaykit.sealing import (
    Keys,
    SealContext,
    SealError,
    call_with_key_provider,
    read_blob,
    rewrap,
)
from relaykit.storage import integrations as rows
from relaykit.storage.database import Database

logger = logging.getLogger("relaykit.keys")


#: The key a blob that cannot even be decoded is counted under by :func:`key_usage`.
UNREADABLE = ("", "")


async def key_usage(database: Database) -> Counter[tuple[str, str]]:
    """How many live sealed rows each (key provider, key id) wraps; blobs too corrupt to
    name their key are counted under :data:`UNREADABLE` (those integrations' fault: their
    secrets must be replaced), so one altered row does not stop ``keys status``."""

    def count(conn: sa.Connection) -> Counter[tuple[str, str]]:
        usage: Counter[tuple[str, str]] = Counter()
        for sealed in rows.sealed_blobs(conn):
            try:
                blob = read_blob(sealed)
            except SealError:
                usage[UNREADABLE] += 1
            else:
                usage[(blob.key_provider, blob.key_id)] += 1
        return usage

    return await database.read(count)


async def sealed_row_count(database: Database) -> int:
    return await database.read(rows.count_sealed)


class RewrapProgress(msgspec.Struct):
    rewrapped: int = 0
    skipped: int = 0  # changed by a concurrent write between read and update: already current
    failed: int = 0


async def rewrap_all(
    database: Database,
    key_provider: Keys,
    *,
    batch_size: int = 200,
    on_batch: Callable[[int], None] = lambda done: None,
) -> RewrapProgress:
    """Move every sealed row not under the primary key onto it, online.

    Rows are read in batches by id (so a run can stop and resume anywhere: it only ever looks
    for rows still under an old key), rewrapped in memory, and written back with
    compare-and-set on the blob itself: a row a tenant re-sealed meanwhile is left as it is
    (its new blob is already under the primary key). Passes repeat until one finds nothing
    to do, which also catches rows another process sealed with the old key just before it
    noticed the rotation. A row that cannot be rewrapped is tried again by each pass (its key
    provider may have come back) but counted and logged once.
    """
    progress = RewrapProgress()
    failed_ids: set[str] = set()
    while True:
        moved_this_pass = 0
        last_id = ""
        while batch := await database.read(rows.sealed_after, last_id, batch_size):
            last_id = batch[-1].id
            failed_before = progress.failed
            replacements = await call_with_key_provider(
                key_provider, _rewrapped, batch, key_provider, progress, failed_ids
            )
            done = await database.transaction(
                _replace_and_record,
                replacements,
                key_provider,
                failed=progress.failed - failed_before,
            )
            progress.rewrapped += done
            progress.skipped += len(replacements) - done
            moved_this_pass += done
            on_batch(len(batch))
        if moved_this_pass == 0:
            return progress


def _replace_and_record(
    conn: sa.Connection,
    replacements: Sequence[tuple[str, bytes, bytes]],
    key_provider: Keys,
    *,
    failed: int,
) -> int:
    """Store one batch's new blobs and, in the same transaction, its ``keys.rewrapped``
    event (when it moved or failed anything): a run stopped half-way leaves a trail of what
    it did. How many rows were replaced."""
    done = rows.replace_sealed(conn, replacements)
    if done or failed:
        primary = key_provider.primary_key_id
        audit.record(
            conn,
            tenant_id=None,
            action=audit.KEYS_REWRAPPED,
            resource_type="key",
            # a KMS's key id (an ARN) is longer than an id column: details has it
            resource_id=primary if len(primary) <= 26 else None,
            details={
                "key_provider": key_provider.name,
                "primary_key_id": primary,
                "rewrapped": done,
                "skipped": len(replacements) - done,
                "failed": failed,
            },
        )
    return done


def _rewrapped(
    batch: Sequence[Sequence[Any]],
    key_provider: Keys,
    progress: RewrapProgress,
    failed_ids: set[str],
) -> list[tuple[str, bytes, bytes]]:
    replacements = []
    for integration_id, tenant_id, provider, sealed in batch:
        try:
            fresh = rewrap(sealed, SealContext(tenant_id, integration_id, provider), key_provider)
        except RelaykitError as exc:
            if integration_id not in failed_ids:  # an earlier pass counted it already
                failed_ids.add(integration_id)
                progress.failed += 1
                logger.error("integration %s cannot be rewrapped: %s", integration_id, exc)
            continue
        if fresh is not None:
            replacements.append((integration_id, sealed, fresh))
    return replacements
