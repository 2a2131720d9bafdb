"""Which actor a replica mints a key's next dot with: per-key actor epochs (Riak KV679).

Pure: no I/O; the wall clock is passed in.

The failure (riak_test ``kv679_dataloss``; Basho's KV679 write-up). A dot ``(r, n)`` names
one write only if replica ``r`` never mints ``n`` twice for the key, and ``r`` knows its next
``n`` only from its own copy of the key. A replica that no longer holds what it minted (its
copy quarantined after bit rot, its partition dropped by a transfer and later regained, a
tombstone purged on it but not elsewhere, its data restored from an older backup) mints a
dot that another replica's clock already covers: the new version is "superseded" on every
replica that syncs with it, though nobody saw it, and the write answered 2xx disappears.

The fix, as Riak's per-key epochs (riak_kv 2.1 ``riak_kv_vnode:maybe_new_key_epoch``). A
replica keeps, beside each key it coordinated, a *claim*: the epoch of the actor
``<base>.<epoch>`` it mints that key's dots with. The claim is an invariant kept by the
store: *if a claim exists, the local copy holds every dot ever minted by the claimed actor
for that key* -- it is set only by a mint, in the same transaction, and deleted in the same
transaction as anything that makes the node forget its copy (quarantine, a partition drop,
a tombstone purge, a corrupt record overwritten by a repair). A copy recreated from peers by
a transfer or a repair never gets a claim. At mint time (:func:`keeps_claim`) the replica
uses its claimed actor, or takes a fresh epoch when there is no claim (never coordinated
here, or forgotten since), when the claim predates the store's *floor*, or when the client's
context has seen more of the claimed actor than the local copy holds (Riak's "local clock
behind the incoming context"). A fresh epoch's actor has minted nothing yet, anywhere, so
its first dot is covered by no clock: the new version is concurrent with what it did not
see, with or without a context.

Fresh epochs never repeat, even after a restore. An epoch is ``max(last + 1, now_ms <<
EPOCH_SHIFT)`` (:func:`next_epoch`): the counter is kept with the data, and a store restored
from an old backup restarts above every epoch issued since, as long as the wall clock did
not step back across the outage and fewer than 1024 fresh epochs were taken per millisecond
on average (a fresh epoch costs at least one fsynced write). The floor handles the claims a
restored copy brings back: the store records the identity of its database file (device and
inode) and, when it opens a file that is not the one it last ran on (a copy put back) or
one whose writes were not durable, raises the floor above every epoch issued, which voids
every claim at once. (A filesystem snapshot rolled back in place keeps the inode and is not
detected; restore by copying.)

Cost: clock growth. A key's clock gains one entry each time a replica coordinates it after
losing its claim; in steady state (clean restarts, no moves) a replica keeps one actor per
key, as before. See the bound in dfsring.core.vclock's "Bounds" paragraph.

Form. Actors this cluster issues are ``<node id>.<6 hex>`` (the store's base actor, created
with its database, as before epochs) or ``<node id>.<6 hex>.<hex epoch>``; a client context
naming anything else, or an epoch from the future, is refused (:func:`context_problem`).
"""

from __future__ import annotations

import re

from dfsring.core.vclock import Versions, VersionVector

EPOCH_SHIFT = 10  # fresh epochs per millisecond of wall clock the floor leaves room for
EPOCH_BYTES = 8
MAX_EPOCH = (1 << 63) - 1
MAX_CONTEXT_COUNTER = 1 << 48  # writes through one actor epoch of one key: never reached
FUTURE_SLACK_MS = 24 * 3600 * 1000  # clock skew a context's epoch may show (one day)
_ACTOR_RE = re.compile(r"(?P<node>[A-Za-z0-9][A-Za-z0-9._-]{0,63})\.[0-9a-f]{6}"
                       r"(?:\.(?P<epoch>[0-9a-f]{1,16}))?", re.ASCII)


def epoch_actor(base: str, epoch: int) -> str:
    """The actor of ``base``'s epoch ``epoch``."""
    return f"{base}.{epoch:x}"


def next_epoch(last: int, now_ms: int) -> int:
    """A fresh epoch above ``last`` and above every epoch issued before ``now_ms``."""
    return min(MAX_EPOCH, max(last + 1, max(0, now_ms) << EPOCH_SHIFT))


def keeps_claim(claim: int | None, floor: int, base: str, local: Versions,
                context: VersionVector) -> bool:
    """True if the replica may mint this key's next dot with its claimed epoch; False: take
    a fresh one (see the module docstring for why each case needs one)."""
    if claim is None or claim < floor:
        return False
    actor = epoch_actor(base, claim)
    return context.get(actor) <= local.clock.get(actor)


def encode_epoch(epoch: int) -> bytes:
    return epoch.to_bytes(EPOCH_BYTES, "big")


def decode_epoch(raw: bytes | None) -> int | None:
    """A stored epoch; None if absent or not one we wrote (then it is treated as no claim)."""
    if raw is None or len(raw) != EPOCH_BYTES:
        return None
    return int.from_bytes(raw, "big")


def context_problem(context: VersionVector, now_ms: int) -> str | None:
    """Why a client's context cannot be one this cluster issued, or None if it may be.

    Actors must have a form this cluster issues; counters must be below MAX_CONTEXT_COUNTER
    (one actor epoch's writes to one key); epochs must not be from the future (beyond a day
    of clock skew): a forged future epoch could cover the dots of a fresh epoch yet to come.
    """
    horizon = next_epoch(0, now_ms + FUTURE_SLACK_MS)
    for actor, counter in context.entries:
        m = _ACTOR_RE.fullmatch(actor)
        if m is None:
            return f"actor {actor[:80]!r} is not one this cluster issues"
        if counter > MAX_CONTEXT_COUNTER:
            return f"counter {counter} of actor {actor!r} is beyond any write count"
        epoch = m.group("epoch")
        if epoch is not None and int(epoch, 16) > horizon:
            return f"actor {actor!r} names an epoch from the future"
    return None
