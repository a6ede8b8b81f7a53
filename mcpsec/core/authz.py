"""`authz check`: is this credential, token or API key, allowed to do this? One answer.

    decision = check_access(credential, "files:write", tokens=tokens, api_keys=keys)
    decision.allowed, decision.reason, decision.principal

The kind of credential is told by its shape: an API key parses as one (prefix, id, secret,
checksum); anything with two dots is a JWT. Each is then checked by its own rules in full
(signature, expiry, revocation, or key status), and the permission last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from mcpsec.core.audit import NO_AUDIT, Audit, Outcome
from mcpsec.core.key_format import MalformedKeyError, parse_key
from mcpsec.core.rbac import check_permission

if TYPE_CHECKING:
    from mcpsec.core.api_keys import ApiKeys
    from mcpsec.core.tokens import Tokens


class CredentialKind(StrEnum):
    TOKEN = "token"  # noqa: S105 - a kind of credential, not one
    KEY = "key"


@dataclass(frozen=True)
class AccessDecision:
    allowed: bool = field(metadata={"essential": True})
    reason: str | None  # the verdict's reason when not allowed
    kind: CredentialKind
    principal: str | None  # the token's subject, or the key's owner (else its id)
    permission: str


def credential_kind(credential: str) -> CredentialKind:
    try:
        parse_key(credential)
    except MalformedKeyError:
        return CredentialKind.TOKEN
    return CredentialKind.KEY


def check_access(
    credential: str,
    permission: str,
    *,
    tokens: Callable[[], Tokens],
    api_keys: Callable[[], ApiKeys],
    kind: CredentialKind | None = None,
    audience: str | None = None,
    audit: Audit = NO_AUDIT,
) -> AccessDecision:
    """Allowed or not, and why; `kind` is told by the credential's shape unless given.
    A store that cannot answer raises StoreError: never "allowed" unchecked."""
    check_permission(permission)
    chosen = kind or credential_kind(credential)
    if chosen is CredentialKind.KEY:
        verdict = api_keys().verify(credential, permission=permission)
        principal = verdict.owner or verdict.key_id
        reason = verdict.reason.value if verdict.reason else None
        decision = AccessDecision(verdict.valid, reason, chosen, principal, permission)
    else:
        checked = tokens().verify(credential, audience=audience, permission=permission)
        subject = checked.claims.get("sub") if checked.valid else None
        reason = checked.reason.value if checked.reason else None
        decision = AccessDecision(checked.valid, reason, chosen, subject, permission)
    audit.verdict(
        "authz.checked",
        Outcome.ALLOWED if decision.allowed else Outcome.DENIED,
        subject=decision.principal,
        reason=decision.reason,
        details={"permission": permission, "credential": chosen.value},
    )
    return decision
