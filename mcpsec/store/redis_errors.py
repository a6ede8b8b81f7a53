"""Every redis-py failure becomes one mcpsec error with a sentence an operator can act on.

Catching only `ConnectionError` would miss timeouts, read-only replicas, OOM, ACL refusals and
cluster errors; this maps the whole family, and never lets a password into the message.
"""

from __future__ import annotations

import ssl
from typing import Final, TypeVar

import redis
from redis.exceptions import RedisClusterException

from mcpsec.core.errors import StoreError, StoreReadOnlyError, StoreUnavailableError
from mcpsec.store.redis_sentinel import (
    AsyncMasterNotFoundError,
    MasterNotFoundError,
    no_primary_error,
)

E = TypeVar("E", bound=BaseException)
_HINT = "check that Redis is running and reachable, or point --store / MCPSEC_STORE_URL elsewhere"
_CREDENTIALS_HINT = (
    "check the user and password (the store URL, MCPSEC_STORE_USERNAME, MCPSEC_STORE_PASSWORD "
    "or store.password_file)"
)
_CA_HINT = (
    "set store.tls_ca_file (MCPSEC_STORE_TLS_CA_FILE) to the CA that signed the server's "
    "certificate"
)
# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code) -> what to do.
_VERIFY_HINTS: Final = {
    2: _CA_HINT,  # unable to get issuer certificate
    18: _CA_HINT,  # self-signed certificate
    19: _CA_HINT,  # self-signed certificate in chain
    20: _CA_HINT,  # unable to get local issuer certificate
    21: _CA_HINT,  # unable to verify the first certificate
    9: "the server's certificate is not valid yet: check this machine's clock",
    10: "the server's certificate has expired: renew it (or check this machine's clock)",
    62: "connect with a name the server's certificate was issued for; only if you must, set "
    "store.tls_check_hostname = false (MCPSEC_STORE_TLS_CHECK_HOSTNAME)",
    64: "connect with an address the server's certificate was issued for; only if you must, "
    "set store.tls_check_hostname = false (MCPSEC_STORE_TLS_CHECK_HOSTNAME)",
}
_CLIENT_CERT_HINT = (
    "give a client certificate the server's CA trusts: store.tls_cert_file and "
    "store.tls_key_file (MCPSEC_STORE_TLS_CERT_FILE, MCPSEC_STORE_TLS_KEY_FILE)"
)
_NO_TLS_HINT = "use the server's TLS port, or redis:// for a server without TLS"
# ssl.SSLError.reason -> what it means here, and what to do.
_TLS_REASONS: Final = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": (
        "the server requires a client certificate",
        _CLIENT_CERT_HINT,
    ),
    "SSLV3_ALERT_HANDSHAKE_FAILURE": ("the server refused the handshake", _CLIENT_CERT_HINT),
    "TLSV1_ALERT_UNKNOWN_CA": (
        "the server does not trust the client certificate",
        _CLIENT_CERT_HINT,
    ),
    "SSLV3_ALERT_BAD_CERTIFICATE": ("the server refused the client certificate", _CLIENT_CERT_HINT),
    "WRONG_VERSION_NUMBER": ("the server does not speak TLS on that port", _NO_TLS_HINT),
    "RECORD_LAYER_FAILURE": ("the server does not speak TLS on that port", _NO_TLS_HINT),
}
# The handshake cut short: TLS 1.3 servers that want a client certificate often just close.
_CLOSED = (
    "the server closed the TLS connection",
    "if it requires a client certificate, " + _CLIENT_CERT_HINT,
)


def translate(  # noqa: PLR0911 - one return per error family reads best as a table
    error: redis.RedisError | RedisClusterException, where: str
) -> StoreError:
    """`where` is the redacted store URL."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    tls = _cause(error, ssl.SSLError)
    if tls is not None:
        return _tls_error(tls, where)
    if isinstance(error, MasterNotFoundError | AsyncMasterNotFoundError):  # a ConnectionError
        return no_primary_error(error, where)
    auth = _cause(error, redis.AuthenticationError)  # a cluster client wraps it
    if auth is not None:
        said = str(auth).strip().splitlines()[0].rstrip(".") if str(auth).strip() else "refused"
        return StoreUnavailableError(
            f"the store at {where} refused the credentials (authentication failed): {said}",
            hint=_CREDENTIALS_HINT,
        )
    if isinstance(error, redis.TimeoutError):
        hint = _HINT
        if where.lower().startswith("rediss"):
            hint = "check that the server speaks TLS on that port, and " + _HINT.removeprefix(
                "check that "
            )
        return StoreUnavailableError(f"the store at {where} did not answer in time", hint=hint)
    if isinstance(error, redis.ReadOnlyError):
        return StoreReadOnlyError(
            f"the store at {where} is a read-only replica and refused a write",
            hint="point the store URL at the primary",
        )
    if isinstance(error, redis.exceptions.NoPermissionError):
        return StoreError(
            f"the store at {where} denied a command to this ACL user: {text}",
            hint="grant the user the commands mcpsec needs (see `mcpsec doctor`)",
        )
    if isinstance(error, redis.exceptions.TryAgainError):
        # A multi-key script meets a slot in the middle of a move (some of its keys already
        # gone to the new node): the move ends in moments, and nothing was run or changed.
        return StoreUnavailableError(
            f"the cluster at {where} is moving the slot this call needs (TRYAGAIN)",
            hint="retry in a moment; it clears when the resharding of that slot ends",
        )
    if isinstance(error, redis.ConnectionError | redis.exceptions.ClusterDownError):
        hint = _HINT
        # A TLS-only port hangs up on a plain client; a node of a cluster or a Sentinel
        # service that hangs up has far likelier died (their URLs name the scheme anyway).
        single = "+" not in where.partition("://")[0]
        if _cut_off(text) and single and not where.lower().startswith("rediss"):
            hint = "if the server expects TLS, write rediss://; otherwise " + _HINT
        return StoreUnavailableError(f"the store at {where} is unreachable: {text}", hint=hint)
    if isinstance(error, RedisClusterException):
        return StoreUnavailableError(f"the cluster at {where} cannot serve: {text}", hint=_HINT)
    # redis-py strips the "OOM" code from the message (a script's error included) and says
    # it with the class: the text alone ("command not allowed when used memory > ...") would
    # reach the user as a bare "failed", with no word of memory and no hint.
    if isinstance(error, redis.exceptions.OutOfMemoryError) or text.startswith("OOM"):
        return StoreError(
            f"the store at {where} is out of memory and refused a write",
            hint="raise maxmemory or free space; mcpsec needs maxmemory-policy noeviction",
        )
    return StoreError(f"the store at {where} failed: {text}")


def _cut_off(text: str) -> bool:
    """The server hung up on a plain connection, as a TLS-only port does."""
    return "reset by peer" in text or "closed by server" in text.lower()


def _cause(error: BaseException, family: type[E]) -> E | None:
    """The error of `family` behind a redis-py error, if any: redis-py raises its
    ConnectionError from an `ssl` error, and a cluster client its RedisClusterException
    from the error of the node it could not connect to."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, family):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _tls_error(error: ssl.SSLError, where: str) -> StoreUnavailableError:
    """One line for a TLS failure: what failed, OpenSSL's own words, and what to do. The
    attributes are read with defaults: an `ssl` error made outside OpenSSL has none."""
    reason = getattr(error, "reason", None)
    if isinstance(error, ssl.SSLCertVerificationError):
        message = getattr(error, "verify_message", None) or reason or "unknown reason"
        return StoreUnavailableError(
            f"the store at {where} failed TLS: certificate verify failed: "
            f"{str(message).rstrip('.')}",
            hint=_VERIFY_HINTS.get(int(getattr(error, "verify_code", 0) or 0), _CA_HINT),
        )
    closed = isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError)
    what, hint = _TLS_REASONS.get(str(reason), _CLOSED if closed else (None, None))
    return StoreUnavailableError(
        f"the store at {where} failed TLS: {what or reason or type(error).__name__}",
        hint=hint or "check the TLS settings (store.tls_*) against the server's",
    )
