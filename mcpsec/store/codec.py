"""Field values travel as canonical JSON text, so that equal values are equal byte strings.

That lets a Lua script or an SQL statement compare an expected value with a stored one
without understanding JSON, and lets counters be plain decimal text that Lua can add to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from mcpsec.core.errors import InvalidInputError
from mcpsec.store.interface import JSONValue

NULL = "null"


def encode(value: JSONValue) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as e:
        # The value itself is not quoted: it could be a secret someone passed by mistake.
        raise InvalidInputError(
            f"a {type(value).__name__} value cannot be stored as JSON", field="fields"
        ) from e


def decode(text: str) -> JSONValue:
    return json.loads(text)


def encode_fields(fields: Mapping[str, JSONValue]) -> dict[str, str]:
    return {name: encode(value) for name, value in fields.items()}


def decode_fields(fields: Mapping[str, str]) -> dict[str, JSONValue]:
    return {name: decode(text) for name, text in fields.items()}


def encode_document(fields: Mapping[str, JSONValue]) -> str:
    """A whole record as one JSON object (the SQLite column and the log entry body)."""
    return encode(dict(fields))
