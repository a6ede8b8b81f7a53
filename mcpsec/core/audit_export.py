"""`audit export`: events as JSON lines or CSV, streamed, to stdout or a private file."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from mcpsec.core.audit import EVENT_FIELDS, AuditEvent
from mcpsec.core.errors import ConfigError

COLUMNS: Final = ("id", "seq", "time", *EVENT_FIELDS)


def write_events(
    events: Iterable[AuditEvent], fmt: str, path: Path | None, line: Callable[[str], None]
) -> int:
    """Write each event (one line each, so a huge window never sits in memory); to `path`
    (created 0600) if given, else through `line`. Returns how many were written."""
    if path is None:
        return _write(events, fmt, line)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from e
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:

        def to_file(text: str) -> None:
            f.write(text + "\n")

        return _write(events, fmt, to_file)


def _write(events: Iterable[AuditEvent], fmt: str, line: Callable[[str], None]) -> int:
    count = 0
    if fmt == "csv":
        line(_csv_row(COLUMNS))
    for event in events:
        document = _document(event)
        if fmt == "csv":
            line(_csv_row([_cell(document.get(c)) for c in COLUMNS]))
        else:
            line(json.dumps(document, separators=(",", ":")))
        count += 1
    return count


def _document(event: AuditEvent) -> dict[str, object]:
    document: dict[str, object] = {"id": event.id, "seq": event.seq, "time": event.time.isoformat()}
    for name in EVENT_FIELDS:
        value = getattr(event, name)
        if value not in (None, {}):
            document[name] = dict(value) if name == "details" else value
    return document


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = str(value)
    # A cell starting with = + - @ would be a formula in a spreadsheet: quote it as text.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_row(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(list(cells))  # quotes cells holding \r or \n
    return buffer.getvalue().removesuffix("\r\n")
