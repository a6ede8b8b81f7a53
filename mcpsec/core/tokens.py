"""Access and refresh tokens: mint, verify, inspect, revoke, and refresh with reuse detection.

    tokens = Tokens.from_settings(settings, store)
    minted = tokens.mint("alice", roles=["user"], audience="https://mcp.example.com")
    tokens.verify(minted.access_token, permission="files:read").valid   # True
    tokens.revoke(minted.access_token)                                   # the next verify: revoked
    tokens.refresh(minted.refresh_token)   # a new pair; the old refresh token is spent

Verification is the signature and claim rules of `token_rules`, then one read of the
revocation marks (the token's `jti`, its subject's cut-off, its refresh family), which on
Redis is one round trip to one slot. When the store cannot answer, verification raises
`StoreError`: it never says valid without having checked.

Revocations are store marks that expire with the tokens they revoke. A subject cut-off
revokes every token of the subject issued at or before it, so tokens minted in the same
second as `revoke --subject` are revoked too (`iat` has whole seconds): it errs closed.

A refresh family starts at mint. Its record (which carries the grants, so the refresh token
carries only its ids) names the live refresh token; refreshing spends it and names the new
one, by compare-and-set. A spent token presented again revokes the family, unless it comes
within `reuse_leeway` seconds of being spent (two concurrent refreshes by one client): then
it gets its own new pair. The family ends when the first refresh token would have expired.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from mcpsec.core.async_bridge import in_thread
from mcpsec.core.audit import NO_AUDIT, Audit, Outcome, audited
from mcpsec.core.clock import Clock, SystemClock, to_datetime
from mcpsec.core.durations import MAX_SECONDS, check_lifetime
from mcpsec.core.errors import ConfigError, InvalidInputError, MCPSecError
from mcpsec.core.rbac import RoleTable, allows, check_permission
from mcpsec.core.roles import DEFAULT_ROLES
from mcpsec.core.signing_keys import Algorithm
from mcpsec.core.token_ids import (
    JtiParts,
    check_audience,
    check_subject,
    jti_matches,
    new_jti,
    parse_jti,
    subject_tag,
)
from mcpsec.core.token_keys import TokenKeys
from mcpsec.core.token_rules import (
    Policy,
    Reason,
    TokenCheck,
    TokenType,
    check_token,
    read_unverified,
)
from mcpsec.store import Record, Store, UpdateStatus

if TYPE_CHECKING:
    from mcpsec.core.config import Settings

FAMILY_KIND: Final = "token_family"
CUTOFF_MARK: Final = "s"  # the subject's cut-off: tokens issued at or before it are revoked
LATEST_MARK: Final = "x"  # the latest `exp` of any token minted for the subject
MAX_LIVE: Final = 32  # live refresh tokens of a family: 1, plus forks by concurrent refreshes
_CAS_TRIES: Final = 50
_FAMILY_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
ALL_ALGORITHMS: Final = tuple(a.value for a in Algorithm)


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT: Final = _Default()


@dataclass(frozen=True)
class MintedTokens:
    access_token: str = field(repr=False, metadata={"essential": True})
    refresh_token: str | None = field(repr=False)
    token_type: str
    expires_in: int
    jti: str


@dataclass(frozen=True)
class TokenVerdict:
    valid: bool = field(metadata={"essential": True})
    reason: Reason | None
    claims: Mapping[str, Any] = field(default_factory=dict)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(_strings(self.claims.get("roles")))

    @property
    def permissions(self) -> tuple[str, ...]:
        """The effective permissions the token was minted with."""
        return tuple(_strings(self.claims.get("permissions")))


@dataclass(frozen=True)
class RefreshResult:
    valid: bool
    reason: Reason | None
    tokens: MintedTokens | None = field(default=None, metadata={"essential": True})


@dataclass(frozen=True)
class Inspection:
    """What a token says about itself, believed for nothing: `verified` is always False."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any] = field(metadata={"essential": True})
    verified: bool
    revoked: bool | None  # None: not known (the store did not answer, or no usable ids)
    revocation_note: str | None
    now: float


@dataclass(frozen=True)
class Revocation:
    target: str  # "token", "jti" or "subject"
    jti: str | None
    subject_tag: str
    revoked: bool = field(metadata={"essential": True})  # False: it had expired already
    revoked_at: datetime
    until: datetime | None  # when the revocation mark itself expires


class Tokens:
    """The token rules over a Store and a set of signing keys."""

    def __init__(
        self,
        store: Store | Callable[[], Store],
        keys: TokenKeys | Callable[[], TokenKeys],
        *,
        issuer: str = "mcpsec",
        audience: str | None = None,
        access_ttl: float = 30 * 60.0,
        refresh_ttl: float = 7 * 86400.0,
        algorithms: Iterable[str] = ALL_ALGORITHMS,
        leeway: float = 0.0,
        reuse_leeway: float = 2.0,
        roles: RoleTable = DEFAULT_ROLES,
        clock: Clock | None = None,
        audit: Audit = NO_AUDIT,
    ) -> None:
        """`store` and `keys` may be functions that open them: a malformed token then never
        opens a store (unless `audit` records the verdict in it), and `token inspect` never
        needs a key."""
        self._store = store
        self.audit = audit
        self._keys = keys
        self._opened_store: Store | None = None
        self._opened_keys: TokenKeys | None = None
        self.issuer = issuer
        self.audience = check_audience(audience) if audience is not None else None
        self.access_ttl = _lifetime(access_ttl, "access_ttl")
        self.refresh_ttl = _lifetime(refresh_ttl, "refresh_ttl")
        self.algorithms = frozenset(Algorithm(a) for a in algorithms)
        self.leeway = leeway
        self.reuse_leeway = reuse_leeway
        self.roles = roles
        self.clock = clock or SystemClock()
        self._policies: dict[str | None, Policy] = {}
        self.policy(None)  # a bad issuer or leeway is a configuration error now

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        store: Store | Callable[[], Store],
        keys: TokenKeys | Callable[[], TokenKeys] | None = None,
        *,
        clock: Clock | None = None,
        audit: Audit = NO_AUDIT,
    ) -> Tokens:
        t = settings.tokens
        return cls(
            store,
            keys if keys is not None else functools.partial(load_keys, settings),
            issuer=t.issuer,
            audience=t.audience,
            access_ttl=t.access_ttl,
            refresh_ttl=t.refresh_ttl,
            algorithms=t.algorithms,
            leeway=t.leeway,
            reuse_leeway=t.reuse_leeway,
            roles=settings.roles,
            clock=clock,
            audit=audit,
        )

    @property
    def store(self) -> Store:
        if self._opened_store is None:
            self._opened_store = self._store() if callable(self._store) else self._store
        return self._opened_store

    @property
    def keys(self) -> TokenKeys:
        if self._opened_keys is None:
            self._opened_keys = self._keys() if callable(self._keys) else self._keys
        return self._opened_keys

    def policy(self, audience: str | None) -> Policy:
        """The verification policy for an audience (None: the configured one, if any)."""
        chosen = check_audience(audience) if audience is not None else self.audience
        found = self._policies.get(chosen)
        if found is None:
            found = Policy(self.issuer, chosen, self.algorithms, self.leeway)
            self._policies[chosen] = found
        return found

    # -- mint ------------------------------------------------------------------------------

    def mint(
        self,
        subject: str,
        *,
        roles: Iterable[str] = (),
        permissions: Iterable[str] = (),
        audience: str | _Default | None = DEFAULT,
        ttl: float | None = None,
        refresh: bool = True,
    ) -> MintedTokens:
        """An access token (and, unless `refresh=False`, the first refresh token of a family)."""
        check_subject(subject)
        role_names = tuple(dict.fromkeys(self.roles.check_role(r) for r in roles))
        extra = tuple(dict.fromkeys(check_permission(p) for p in permissions))
        aud = self.audience if isinstance(audience, _Default) else audience
        if aud is not None:
            check_audience(aud)
        lifetime = _lifetime(ttl if ttl is not None else self.access_ttl, "ttl")
        signer = self.keys.signer()
        if signer.alg not in self.algorithms:
            raise ConfigError(
                f"the signing key {signer.kid} uses {signer.alg}, which tokens.algorithms "
                "does not accept: its tokens would never verify"
            )
        now = self.clock.now()
        grants = _Grants(role_names, extra, aud, lifetime)
        family = None
        if refresh:
            end = int(now) + _whole(self.refresh_ttl)
            family = _Family(secrets.token_urlsafe(16), end, new_jti(subject, end))
        minted = self._issue(subject, grants, now, family, new_family=refresh)
        details = {"roles": list(role_names), "refresh": refresh, "audience": aud}
        self._audit_issued("token.minted", subject, minted, family, details)
        return minted

    def _audit_issued(
        self,
        type: str,
        subject: str,
        minted: MintedTokens,
        family: _Family | None,
        details: Mapping[str, Any],
    ) -> None:
        """Record tokens just issued; if that cannot be done, they are revoked before the
        error is raised, so no token is out there that the log does not know of."""
        try:
            self.audit.change(type, subject=subject, jti=minted.jti, details=details)
        except MCPSecError:
            with contextlib.suppress(MCPSecError):
                self._revoke_jti("unaudited", minted.jti, audit=False)
                if family is not None:
                    self.store.set_mark(
                        subject_tag(subject),
                        _family_mark(family.fam),
                        self.clock.now(),
                        ttl=family.exp - self.clock.now() + self.leeway + 1,
                    )
            raise

    # -- verify ----------------------------------------------------------------------------

    def verify(
        self, token: str, *, audience: str | None = None, permission: str | None = None
    ) -> TokenVerdict:
        """Valid or not, and why. Raises StoreError (never answers valid) if the revocation
        check cannot be made."""
        offline = self._verify_offline(token, audience, permission)
        if isinstance(offline, TokenVerdict):
            verdict = offline
        else:
            marks = self.store.get_marks(*_revocation_query(offline))
            verdict = _verify_verdict(offline, marks, permission)
        self._audit_verdict(token, verdict, permission)
        return verdict

    def _audit_verdict(self, token: str, verdict: TokenVerdict, permission: str | None) -> None:
        claims = verdict.claims
        named = isinstance(claims.get("jti"), str) and isinstance(claims.get("sub"), str)
        self.audit.verdict(
            "token.verified",
            Outcome.ALLOWED if verdict.valid else Outcome.DENIED,
            subject=claims.get("sub") if named else None,
            jti=claims.get("jti") if named else None,
            reason=verdict.reason.value if verdict.reason else None,
            credential=None if named else self.audit.credential(token),
            details={"permission": permission} if permission else {},
        )

    def _verify_offline(
        self, token: str, audience: str | None, permission: str | None
    ) -> TokenVerdict | Mapping[str, Any]:
        """The verdict if it needs no store, else the claims whose revocation to check."""
        if permission is not None:
            check_permission(permission)
        check = self.check(token, audience=audience)
        if not check.valid:
            return TokenVerdict(False, check.reason, check.claims)
        return check.claims

    def check(
        self,
        token: str,
        *,
        audience: str | None = None,
        expected: TokenType = TokenType.ACCESS,
        check_times: bool = True,
    ) -> TokenCheck:
        """The signature and claim rules, and that the `jti` belongs to this `sub` and `exp`;
        no store involved."""
        check = check_token(
            token,
            self.keys.verifiers(),
            self.policy(audience),
            now=self.clock.now(),
            expected=expected,
            check_times=check_times,
        )
        if check.valid and not jti_matches(
            check.claims["jti"], check.claims["sub"], check.claims["exp"]
        ):
            return TokenCheck(False, Reason.MALFORMED, check.claims)
        if check.valid and not _family_ok(check.claims, expected):
            return TokenCheck(False, Reason.MALFORMED, check.claims)
        if check.valid and check.claims["exp"] - check.claims["iat"] > MAX_SECONDS:
            # Never minted here, and could not be revoked: a revocation lives at most that long.
            return TokenCheck(False, Reason.MALFORMED, check.claims)
        return check

    # -- inspect ---------------------------------------------------------------------------

    def inspect(self, token: str) -> Inspection:
        """Header and claims without verifying anything; the revocation status if it can be
        read. Refuses only what is not a JWT at all."""
        parsed = read_unverified(token)
        if parsed is None:
            raise InvalidInputError("this is not a JWT (three base64url parts, JSON inside)")
        header, claims = parsed
        revoked: bool | None = None
        note: str | None = None
        if _inspectable(claims):
            try:
                revoked = self._revoked(claims)
            except MCPSecError as e:
                note = f"revocation status unknown: {e.message}"
        else:
            note = "revocation status unknown: the token has no mcpsec sub, jti and iat"
        return Inspection(header, claims, False, revoked, note, self.clock.now())

    # -- revoke ----------------------------------------------------------------------------

    def revoke(self, token: str) -> Revocation:
        """Revoke one token (access or refresh) until it would have expired. The token must
        carry a valid signature of ours; an expired one is simply reported as such."""
        parsed = read_unverified(token)
        kind = parsed[1].get("type") if parsed else None
        expected = TokenType.REFRESH if kind == TokenType.REFRESH.value else TokenType.ACCESS
        check = self.check(token, expected=expected, check_times=False)
        if not check.valid:
            raise InvalidInputError(
                f"cannot revoke this token: it is not one of ours ({check.reason})",
                hint="to revoke by id, use --jti; to revoke everything of a user, --subject",
            )
        return self._revoke_jti("token", check.claims["jti"])

    def revoke_jti(self, jti: str) -> Revocation:
        return self._revoke_jti("jti", jti)

    def revoke_subject(self, subject: str) -> Revocation:
        """Revoke every token of the subject issued until now, access and refresh alike.

        The cut-off lives until the latest token minted for the subject would expire, and
        at least one refresh lifetime, so that a token minted at this very moment is covered.
        """
        tag = subject_tag(check_subject(subject))
        with audited(self.audit, "token.revoked", subject=subject, details={"by": "subject"}):
            return self._revoke_subject(tag)

    def _revoke_subject(self, tag: str) -> Revocation:
        now = self.clock.now()
        (latest,) = self.store.get_marks(tag, [LATEST_MARK])
        end = max(latest or 0.0, now + self.refresh_ttl, now + self.access_ttl) + self.leeway
        self.store.set_mark(tag, CUTOFF_MARK, now, ttl=end - now)
        return Revocation("subject", None, tag, True, to_datetime(now), to_datetime(end))

    # -- refresh ---------------------------------------------------------------------------

    def refresh(self, refresh_token: str) -> RefreshResult:
        """A new access token and refresh token; the presented one is spent.

        A spent refresh token presented again (after the reuse leeway) revokes its whole
        family, access tokens included, and is answered REUSE_DETECTED.
        """
        check = self.check(refresh_token, expected=TokenType.REFRESH)
        if not check.valid:
            self.audit.verdict(
                "token.refreshed",
                Outcome.DENIED,
                reason=check.reason.value if check.reason else None,
                credential=self.audit.credential(refresh_token),
            )
            return RefreshResult(False, check.reason)
        claims = check.claims
        result = self._refresh(claims)
        subject, jti = claims["sub"], claims["jti"]
        if result.tokens is not None:
            family = _Family(claims["fam"], int(claims["exp"]), "")  # revoked if unaudited
            details = {"refreshed": jti}
            self._audit_issued("token.refreshed", subject, result.tokens, family, details)
        elif result.reason is Reason.REUSE_DETECTED:
            details = {"family": claims["fam"]}
            self.audit.verdict(
                "token.reuse_detected", Outcome.DENIED, subject=subject, jti=jti, details=details
            )
        else:
            reason = result.reason.value if result.reason else None
            self.audit.verdict(
                "token.refreshed", Outcome.DENIED, subject=subject, jti=jti, reason=reason
            )
        return result

    def _refresh(self, claims: Mapping[str, Any]) -> RefreshResult:
        jti, fam, subject = claims["jti"], claims["fam"], claims["sub"]
        for _ in range(_CAS_TRIES):
            record = self.store.get(FAMILY_KIND, fam)
            if record is None or record.fields.get("sub") != subject:
                return RefreshResult(False, Reason.REVOKED)  # ended, or never ours
            if record.fields.get("reused_at") is not None:
                return RefreshResult(False, Reason.REUSE_DETECTED)
            if self._revoked(claims):
                return RefreshResult(False, Reason.REVOKED)
            now = self.clock.now()
            state = _FamilyState.of(record)
            if jti in state.live:
                live = [j for j in state.live if j != jti]
                spent = {**state.recent(now, self.reuse_leeway), jti: now}
            elif now - state.spent.get(jti, -math.inf) <= self.reuse_leeway:
                if len(state.live) >= MAX_LIVE:  # never evict a token handed out: refuse
                    raise MCPSecError(
                        "this refresh token was just spent and refreshed too many times at "
                        "once; use the newest refresh token"
                    )
                live, spent = list(state.live), state.recent(now, self.reuse_leeway)
            else:
                self._end_family(subject, fam, state, record, now)
                return RefreshResult(False, Reason.REUSE_DETECTED)
            minted = self._rotate(subject, fam, state, record, live, spent, now)
            if minted is not None:
                return RefreshResult(True, None, minted)
        raise MCPSecError("the refresh family is changing too fast to refresh; try again")

    # -- plumbing --------------------------------------------------------------------------

    def _issue(
        self,
        subject: str,
        grants: _Grants,
        now: float,
        family: _Family | None,
        *,
        new_family: bool = False,
    ) -> MintedTokens:
        """Sign an access token (and a refresh token of `family`); record what revocation
        needs first, so that nothing is handed out that a revocation could miss."""
        iat = int(now)
        permissions = sorted(self.roles.effective(grants.roles, grants.extra))
        access_exp = iat + _whole(grants.access_ttl)
        access_jti = new_jti(subject, access_exp)
        access: dict[str, Any] = {
            **_times(subject, self.issuer, grants.audience, iat, access_exp, access_jti),
            "type": TokenType.ACCESS.value,
            "roles": list(grants.roles),
            "permissions": permissions,
            "scope": " ".join(permissions),
        }
        latest = access_exp
        refresh_token: str | None = None
        refresh_claims: dict[str, Any] | None = None
        if family is not None:
            access["fam"] = family.fam
            refresh_claims = {
                **_times(
                    subject, self.issuer, grants.audience, iat, family.exp, family.refresh_jti
                ),
                "type": TokenType.REFRESH.value,
                "fam": family.fam,
            }
            latest = max(latest, family.exp)
        tag = subject_tag(subject)
        self.store.set_mark(tag, LATEST_MARK, latest, ttl=latest - now + self.leeway + 1)
        if family is not None and new_family:
            assert refresh_claims is not None
            self.store.put(
                FAMILY_KIND,
                family.fam,
                {
                    "sub": subject,
                    "roles": list(grants.roles),
                    "permissions": list(grants.extra),
                    "audience": grants.audience,
                    "access_ttl": grants.access_ttl,
                    "expires_at": family.exp,
                    "max_exp": latest,
                    "live": [family.refresh_jti],
                    "spent": {},
                    "version": 1,
                    "reused_at": None,
                },
                ttl=family.exp - now + self.leeway + 1,
                only_if_absent=True,
            )
        signer = self.keys.signer()
        if refresh_claims is not None:
            refresh_token = _sign(refresh_claims, signer)
        return MintedTokens(
            _sign(access, signer), refresh_token, "bearer", access_exp - iat, access_jti
        )

    def _rotate(
        self,
        subject: str,
        fam: str,
        state: _FamilyState,
        record: Record,
        live: list[str],
        spent: dict[str, float],
        now: float,
    ) -> MintedTokens | None:
        """Swap in a new refresh token by compare-and-set; None when another refresh won."""
        grants = _Grants(
            tuple(_strings(record.fields.get("roles"))),
            tuple(_strings(record.fields.get("permissions"))),
            record.fields.get("audience"),
            float(record.fields.get("access_ttl") or self.access_ttl),
        )
        family = _Family(fam, state.expires_at, new_jti(subject, state.expires_at))
        access_exp = int(now) + _whole(grants.access_ttl)
        result = self.store.update(
            FAMILY_KIND,
            fam,
            set={
                "live": [*live, family.refresh_jti],
                "spent": spent,
                "version": state.version + 1,
                "max_exp": max(state.max_exp, access_exp),
            },
            expect={"version": state.version, "reused_at": None},
        )
        if result.status is not UpdateStatus.UPDATED:
            return None
        return self._issue(subject, grants, now, family)

    def _end_family(
        self, subject: str, fam: str, state: _FamilyState, record: Record, now: float
    ) -> None:
        """Reuse: revoke every token of the family (the mark), then say so in the record."""
        end = max(state.max_exp, state.expires_at) + self.leeway + 1
        self.store.set_mark(subject_tag(subject), _family_mark(fam), now, ttl=end - now)
        self.store.update(FAMILY_KIND, fam, set={"reused_at": now})

    def _revoked(self, claims: Mapping[str, Any]) -> bool:
        return _revoked_by(claims, self.store.get_marks(*_revocation_query(claims)))

    def _revoke_jti(self, target: str, jti: str, *, audit: bool = True) -> Revocation:
        parts = parse_jti(jti)
        if not audit:
            return self._mark_revoked(target, jti, parts)
        with audited(self.audit, "token.revoked", jti=jti, details={"by": target}):
            return self._mark_revoked(target, jti, parts)

    def _mark_revoked(self, target: str, jti: str, parts: JtiParts) -> Revocation:
        now = self.clock.now()
        end = parts.exp + self.leeway + 1
        if end <= now:
            return Revocation(target, jti, parts.tag, False, to_datetime(now), None)
        self.store.set_mark(parts.tag, _jti_mark(jti), now, ttl=end - now)
        return Revocation(target, jti, parts.tag, True, to_datetime(now), to_datetime(end))


@dataclass(frozen=True)
class _Grants:
    roles: tuple[str, ...]
    extra: tuple[str, ...]
    audience: str | None
    access_ttl: float


@dataclass(frozen=True)
class _Family:
    fam: str
    exp: int  # the family's end: every refresh token of it expires then
    refresh_jti: str  # the refresh token about to be issued


@dataclass(frozen=True)
class _FamilyState:
    live: tuple[str, ...]
    spent: Mapping[str, float]
    version: int
    expires_at: int
    max_exp: float

    @classmethod
    def of(cls, record: Record) -> _FamilyState:
        f = record.fields
        spent = f.get("spent") if isinstance(f.get("spent"), dict) else {}
        return cls(
            tuple(_strings(f.get("live"))),
            {str(k): float(v) for k, v in (spent or {}).items()},
            int(f.get("version") or 0),
            int(f.get("expires_at") or 0),
            float(f.get("max_exp") or 0),
        )

    def recent(self, now: float, leeway: float) -> dict[str, float]:
        """The spent tokens that may still be presented once more (within the leeway)."""
        return {j: at for j, at in self.spent.items() if now - at <= leeway}


def _revocation_query(claims: Mapping[str, Any]) -> tuple[str, list[str]]:
    """One read answers it all: the token's own mark, its subject's cut-off, its family's."""
    names = [_jti_mark(claims["jti"]), CUTOFF_MARK]
    fam = claims.get("fam")
    if isinstance(fam, str):
        names.append(_family_mark(fam))
    return subject_tag(claims["sub"]), names


def _revoked_by(claims: Mapping[str, Any], marks: list[float | None]) -> bool:
    own, cutoff = marks[0], marks[1]
    family = marks[2] if len(marks) > 2 else None
    return own is not None or family is not None or (cutoff is not None and claims["iat"] <= cutoff)


def _verify_verdict(
    claims: Mapping[str, Any], marks: list[float | None], permission: str | None
) -> TokenVerdict:
    if _revoked_by(claims, marks):
        return TokenVerdict(False, Reason.REVOKED, claims)
    if permission is not None and not allows(_strings(claims.get("permissions")), permission):
        return TokenVerdict(False, Reason.INSUFFICIENT_PERMISSION, claims)
    return TokenVerdict(True, None, claims)


def load_keys(settings: Settings) -> TokenKeys:
    from mcpsec.core.signing_keys import Keyring
    from mcpsec.core.token_keys import find_jwt_secret

    folder = settings.tokens.keys_dir
    return TokenKeys.load(Keyring(folder) if folder else None, find_jwt_secret(settings))


def _sign(claims: Mapping[str, Any], signer: Any) -> str:
    import jwt

    return jwt.encode(
        dict(claims), signer.material, algorithm=signer.alg.value, headers={"kid": signer.kid}
    )


def _times(
    subject: str, issuer: str, audience: str | None, iat: int, exp: int, jti: str
) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": subject, "iss": issuer}
    if audience is not None:
        claims["aud"] = audience
    claims.update({"iat": iat, "nbf": iat, "exp": exp, "jti": jti})
    return claims


def _family_ok(claims: Mapping[str, Any], expected: TokenType) -> bool:
    """A refresh token must name its family; a family name must be a plain string."""
    fam = claims.get("fam")
    if fam is None:
        return expected is not TokenType.REFRESH
    return isinstance(fam, str) and _FAMILY_ID.fullmatch(fam) is not None


def _inspectable(claims: Mapping[str, Any]) -> bool:
    sub, jti, iat = claims.get("sub"), claims.get("jti"), claims.get("iat")
    if not (isinstance(sub, str) and isinstance(jti, str)):
        return False
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        return False
    try:
        check_subject(sub)
        parse_jti(jti)
    except InvalidInputError:
        return False
    return _family_ok(claims, TokenType.ACCESS)


def _jti_mark(jti: str) -> str:
    return "j:" + jti


def _family_mark(fam: str) -> str:
    return "f:" + fam


def _strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _lifetime(seconds: float, name: str) -> float:
    lifetime = check_lifetime(seconds, field=name)
    assert lifetime is not None
    return lifetime


def _whole(seconds: float) -> int:
    """Token times are whole seconds; a lifetime never rounds down to nothing."""
    return max(1, math.ceil(seconds))


class AsyncTokens:
    """The same rules for asyncio servers. `verify`, on every request, checks the signature
    in the event loop (CPU only) and awaits the store's async read of the revocation marks;
    the rest run the sync code in a worker thread."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self.mint = in_thread(tokens.mint)
        self.inspect = in_thread(tokens.inspect)
        self.revoke = in_thread(tokens.revoke)
        self.revoke_jti = in_thread(tokens.revoke_jti)
        self.revoke_subject = in_thread(tokens.revoke_subject)
        self.refresh = in_thread(tokens.refresh)

    async def verify(
        self, token: str, *, audience: str | None = None, permission: str | None = None
    ) -> TokenVerdict:
        """Valid or not, and why, recorded in the audit log (queued: the log's background
        thread appends it with the other requests' events). Raises StoreError (never answers
        valid) if the revocation check cannot be made."""
        tokens = self.tokens
        offline = tokens._verify_offline(token, audience, permission)
        if isinstance(offline, TokenVerdict):
            verdict = offline
        else:
            marks = await tokens.store.get_marks_async(*_revocation_query(offline))
            verdict = _verify_verdict(offline, marks, permission)
        tokens._audit_verdict(token, verdict, permission)  # queued, appended meanwhile
        return verdict

    async def aclose(self) -> None:
        """Close the store's asyncio connections of the running event loop."""
        await self.tokens.store.aclose()
