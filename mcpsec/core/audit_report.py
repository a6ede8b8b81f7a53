"""`audit report`: what a security team asks of a window of the audit log, counted once.

    report = summarize(log.events(EventFilter(since=now - 86400)))
    report.failed_authentications, report.top_subjects, report.flags

Failed authentications are denied key and token verifications; permission denials are
denials for `insufficient_permission` (and denied `authz check`s); rate-limit hits are
`rate.limited` events. Flags point at patterns worth a look: a burst of failures from one
subject or client address, and one API key used from many addresses.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from mcpsec.core.audit import AuditEvent, Outcome

AUTHENTICATIONS: Final = frozenset(
    {"key.verified", "token.verified", "token.refreshed", "token.reuse_detected"}
)
BURST_COUNT: Final = 10  # failures …
BURST_SECONDS: Final = 60.0  # … within this long, from one subject or address
MANY_ADDRESSES: Final = 5  # distinct client addresses for one key
TOP: Final = 10


@dataclass(frozen=True)
class Count:
    name: str = field(metadata={"essential": True})
    count: int


@dataclass(frozen=True)
class Flag:
    kind: str  # "failure_burst" or "key_many_addresses"
    who: str = field(metadata={"essential": True})
    detail: str


@dataclass(frozen=True)
class AuditReport:
    events: int
    by_type: tuple[Count, ...]
    by_outcome: tuple[Count, ...]
    failed_authentications: int
    permission_denials: int
    rate_limit_hits: int
    top_subjects: tuple[Count, ...]  # by denied events
    top_clients: tuple[Count, ...]
    flags: tuple[Flag, ...] = field(metadata={"essential": True})


def summarize(events: Iterable[AuditEvent]) -> AuditReport:
    types: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    subjects: Counter[str] = Counter()
    clients: Counter[str] = Counter()
    failed = denials = limited = total = 0
    recent: dict[str, deque[float]] = defaultdict(deque)
    bursts: dict[str, str] = {}
    addresses: dict[str, set[str]] = defaultdict(set)
    for event in events:
        total += 1
        types[event.type] += 1
        outcomes[event.outcome] += 1
        if event.key_id and event.client:
            addresses[event.key_id].add(event.client)
        if event.outcome != Outcome.DENIED:
            continue
        if event.type == "authz.checked":
            continue  # its verification event (just before it) already counts it
        permission = event.reason == "insufficient_permission"
        failed += event.type in AUTHENTICATIONS and not permission
        denials += permission
        limited += event.type == "rate.limited"
        for who in _who(event):
            (clients if who.startswith("client ") else subjects)[who.split(" ", 1)[1]] += 1
            _note_burst(recent[who], event.time.timestamp(), who, bursts)
    flags = [Flag("failure_burst", who, detail) for who, detail in sorted(bursts.items())]
    flags += [
        Flag("key_many_addresses", f"key {key_id}", f"used from {len(seen)} addresses")
        for key_id, seen in sorted(addresses.items())
        if len(seen) >= MANY_ADDRESSES
    ]
    return AuditReport(
        total,
        _counts(types),
        _counts(outcomes),
        failed,
        denials,
        limited,
        _counts(subjects, TOP),
        _counts(clients, TOP),
        tuple(flags),
    )


def _who(event: AuditEvent) -> list[str]:
    found = []
    if event.subject:
        found.append(f"subject {event.subject}")
    if event.client:
        found.append(f"client {event.client}")
    return found


def _note_burst(times: deque[float], at: float, who: str, bursts: dict[str, str]) -> None:
    times.append(at)
    while times and at - times[0] > BURST_SECONDS:
        times.popleft()
    if len(times) >= BURST_COUNT and who not in bursts:
        bursts[who] = f"{len(times)} failures within {BURST_SECONDS:g}s"


def _counts(counter: Counter[str], top: int | None = None) -> tuple[Count, ...]:
    return tuple(Count(name, n) for name, n in counter.most_common(top))
