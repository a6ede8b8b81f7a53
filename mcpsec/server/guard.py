"""The decisions an MCP server makes on every request, over the async core: who is calling,
may they call this tool, have they the rate budget for it; each decision audited.

    guard = Guard.from_settings(load_settings(os.environ))
    principal = await guard.authenticate(bearer)            # None: 401
    decision = await guard.admit(principal, "write_file")   # allowed, or why not

This module knows nothing of HTTP or of the MCP SDK (see `mcpsec.server.app` and
`mcpsec.server.gate`), so its rules can be tested and reused on their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from mcpsec.core.api_keys import ApiKeys, AsyncApiKeys
from mcpsec.core.audit import AuditLog, Outcome
from mcpsec.core.authz import CredentialKind, credential_kind
from mcpsec.core.config import Settings
from mcpsec.core.errors import InvalidInputError, StoreError
from mcpsec.core.ratelimit import AsyncRateLimiter, Decision, RateLimiter
from mcpsec.core.rbac import allows, check_permission
from mcpsec.core.token_ids import subject_tag
from mcpsec.core.tokens import AsyncTokens, Tokens
from mcpsec.store import Store

_LOG: Final = logging.getLogger("mcpsec.server")
ACTOR: Final = "mcp-server"  # the actor of events recorded before a principal is known
TOOL_EVENT: Final = "tool.called"
_SAFE_IDENTITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Principal:
    """Who a verified bearer credential speaks for."""

    name: str  # the subject of a token; the owner (else the key id) of an API key
    kind: CredentialKind
    permissions: frozenset[str]
    roles: tuple[str, ...] = ()
    key_id: str | None = None
    jti: str | None = None
    expires_at: int | None = None  # epoch seconds; None: the credential does not expire

    @property
    def rate_identity(self) -> str:
        """The rate-limit identity (`mcpsec rate show NAME`): the name itself when it is a
        valid identity, else `sub-` and a hash of it."""
        if _SAFE_IDENTITY.fullmatch(self.name):
            return self.name
        return f"sub-{subject_tag(self.name)}"


@dataclass(frozen=True)
class Admission:
    """May this call go ahead; if not, what the server must answer."""

    allowed: bool
    reason: str | None = None  # "insufficient_scope" or "rate_limited"
    permission: str | None = None  # the permission the tool needs, if any
    rate: Decision | None = None  # the rate decision, for the RateLimit header fields


@dataclass
class Guard:
    """One per server process: the services it checks with, and the tool rules."""

    api_keys: AsyncApiKeys
    tokens: AsyncTokens
    limiter: AsyncRateLimiter
    audit: AuditLog
    resource: str | None  # the audience tokens must carry (RFC 8707)
    authorization_servers: tuple[str, ...] = ()
    tools: dict[str, str] = field(default_factory=dict)  # tool -> permission needed
    costs: dict[str, float] = field(default_factory=dict)  # tool -> rate tokens a call costs
    default_permission: str | None = None  # what a tool without its own rule needs

    @classmethod
    def from_settings(cls, settings: Settings, store: Store | None = None) -> Guard:
        """Everything from mcpsec's config and store, as the CLI sees them."""
        opened = store or settings.store.open()
        log = AuditLog.from_settings(settings, opened, actor=ACTOR)
        log.log_failures = True  # a server has no terminal: its failures go to its logs
        return cls(
            AsyncApiKeys(ApiKeys.from_settings(settings, opened, audit=log)),
            AsyncTokens(Tokens.from_settings(settings, opened, audit=log)),
            AsyncRateLimiter(RateLimiter(opened, settings.rate, audit=log)),
            log,
            settings.server.resource,
            settings.server.authorization_servers,
            dict(settings.server.tools),
            dict(settings.server.tool_costs),
            settings.server.default_permission,
        )

    async def aclose(self) -> None:
        """At shutdown: the audit events still queued appended, and the store's asyncio
        connections of this event loop closed."""
        await asyncio.to_thread(self.audit.flush)
        await self.tokens.aclose()

    def requires(self, permission: str, *, tool: str | None = None) -> Callable[[F], F]:
        """Decorator: calling this tool needs `permission` (the tool named as the function,
        unless `tool` says otherwise). The config's [server.tools] says the same."""
        check_permission(permission)

        def register(function: F) -> F:
            self.tools[tool or function.__name__] = permission
            return function

        return register

    async def authenticate(self, credential: str) -> Principal | None:
        """The principal of a valid API key or access token, else None. Fails closed: a
        store that cannot answer is None too (the verdict's event says why)."""
        try:
            if credential_kind(credential) is CredentialKind.KEY:
                verdict = await self.api_keys.verify(credential)
                if not verdict.valid or verdict.key_id is None:
                    return None
                return Principal(
                    verdict.owner or verdict.key_id,
                    CredentialKind.KEY,
                    frozenset(verdict.permissions),
                    verdict.roles,
                    key_id=verdict.key_id,
                )
            checked = await self.tokens.verify(credential, audience=self.resource)
        except StoreError as e:
            self.audit.verdict("server.unavailable", Outcome.ERROR, reason=e.message[:300])
            return None
        if not checked.valid:
            return None
        claims = checked.claims
        return Principal(
            str(claims["sub"]),
            CredentialKind.TOKEN,
            frozenset(checked.permissions),
            checked.roles,
            jti=str(claims["jti"]),
            expires_at=int(claims["exp"]),
        )

    async def admit(self, principal: Principal, tool: str) -> Admission:
        """Permission first (a refusal costs no rate budget), then the rate limit: the
        principal's roles' most generous limit, charged the tool's cost."""
        needed = self.tools.get(tool, self.default_permission)
        if needed is not None and not allows(principal.permissions, needed):
            admission = Admission(False, "insufficient_scope", needed)
        else:
            try:
                rate = await self.limiter.check(
                    principal.rate_identity, roles=principal.roles, cost=self.costs.get(tool, 1.0)
                )
            except InvalidInputError:  # the tool costs more than the bucket can ever hold
                admission = Admission(False, "rate_limited", needed)
            else:
                reason = None
                if not rate.allowed:
                    reason = "store_unavailable" if rate.store_unavailable else "rate_limited"
                admission = Admission(rate.allowed, reason, needed, rate)
        self._record(principal, tool, admission)
        return admission

    def _record(self, principal: Principal, tool: str, admission: Admission) -> None:
        """One event per decision; queued, so the request does not wait for the write."""
        details: dict[str, Any] = {"credential": principal.kind.value}
        if admission.permission:
            details["permission"] = admission.permission
        if admission.rate is not None and admission.rate.store_unavailable:
            verdict = "allowed" if admission.allowed else "denied"
            details["rate"] = "store unavailable: " + verdict
            # Said in the log too: this event goes to the store that just failed, so when
            # it is down the event is lost, and the log is where an operator learns it.
            _LOG.warning(
                "the rate-limit store did not answer: %s's call to %s %s by rate.fail_open",
                principal.name,
                tool,
                verdict,
            )
        self.audit.verdict(
            TOOL_EVENT,
            Outcome.ALLOWED if admission.allowed else Outcome.DENIED,
            actor=principal.name,
            subject=principal.name,
            key_id=principal.key_id,
            jti=principal.jti,
            tool=tool,
            reason=admission.reason,
            details=details,
        )


def rate_headers(decision: Decision) -> dict[str, str]:
    """RateLimit and RateLimit-Policy (draft-ietf-httpapi-ratelimit-headers: quota `q`, window
    `w` = the time to refill the whole bucket, remaining `r`, reset `t`), and Retry-After
    when refused: what a client needs to pace itself. None when the store did not answer: no
    bucket was read, so a quota or a remaining count would be made up."""
    if decision.store_unavailable:
        return {}
    binding = decision.buckets[0] if decision.buckets else None
    policy = f'"{decision.policy}";q={decision.limit}'
    if binding is not None and binding.refill > 0:
        policy += f";w={_whole(binding.capacity / binding.refill)}"
    state = f'"{decision.policy}";r={decision.remaining}'
    if decision.reset_after is not None:
        state += f";t={_whole(decision.reset_after)}"
    headers = {"RateLimit-Policy": policy, "RateLimit": state}
    if not decision.allowed and decision.retry_after is not None:
        headers["Retry-After"] = str(max(1, _whole(decision.retry_after)))
    return headers


def _whole(seconds: float) -> int:
    """Header fields count whole seconds; rounding up never invites a retry too soon."""
    return max(0, math.ceil(seconds))
