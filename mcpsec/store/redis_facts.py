"""What a Redis server says about itself, as the plain facts `mcpsec doctor` judges.

    version, facts = server_facts(node, prefix="mcpsec:", cluster=False)
    facts["maxmemory_policy"], facts["role"], facts["acl_denied"]      # "noeviction", "master", ""

Facts only, never verdicts: the rules (which policy is dangerous, what a replica means) live in
`mcpsec.core.doctor`. A fact the server will not tell (INFO or CONFIG refused by an ACL rule, a
managed Redis without CONFIG, fakeredis) is left out rather than guessed.

The ACL check asks `ACL DRYRUN` when this user may run it, and otherwise sends each command
mcpsec uses, on a probe key under the prefix, in a form that changes nothing (a NOSCRIPT
EVALSHA, a ZADD XX on a missing key, an HSET with one argument too many). Redis checks ACL
rules before it runs a command, so NOPERM means "not allowed" and any other answer "allowed".
Commands called from our Lua scripts count too: ACL rules apply inside scripts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final

import redis

PROBE_KEY: Final = "_doctor:{probe}"  # after the prefix; never holds data for long
_NO_SCRIPT: Final = "0" * 40
_RUN_REFUSED: Final = re.compile(r"permissions to run the '[^']*' command", re.IGNORECASE)


def server_facts(
    node: Any, *, prefix: str, cluster: bool, waits: bool = False
) -> tuple[str, dict[str, str]]:
    """The server's version and facts. `node` is a blocking client for one server; `waits`:
    the store sends WAIT after its changes, so the ACL user needs it too."""
    facts: dict[str, str] = {}
    try:
        info = node.info()
    except redis.ResponseError:  # INFO refused (an ACL rule) or unknown (fakeredis)
        info = {}
        facts["info"] = "unavailable"
    facts["maxmemory_policy"] = str(info.get("maxmemory_policy", "unknown"))
    facts["mode"] = str(info.get("redis_mode", "standalone"))
    for name in ("role", "aof_enabled"):
        if name in info:
            facts[name] = str(info[name])
    if "connected_slaves" in info:
        facts["connected_replicas"] = str(info["connected_slaves"])
    facts |= _config_facts(node)
    if cluster:
        facts |= _cluster_facts(node)
    facts |= acl_facts(node, prefix + PROBE_KEY, waits=waits)
    return str(info.get("redis_version", "unknown")), facts


def _config_facts(node: Any) -> dict[str, str]:
    """The RDB schedule ("" when off) and replica-read-only, from CONFIG GET when allowed."""
    try:
        config = node.config_get("save", "appendonly", "replica-read-only")
    except redis.ResponseError:  # refused, or renamed away by a managed Redis
        return {}
    facts = {}
    if "save" in config:
        facts["rdb_save"] = str(config["save"])
    if "replica-read-only" in config:
        facts["replica_read_only"] = str(config["replica-read-only"])
    if "appendonly" in config and "aof_enabled" not in facts:
        facts["aof_enabled"] = "1" if config["appendonly"] == "yes" else "0"
    return facts


def _cluster_facts(node: Any) -> dict[str, str]:
    try:
        reply = node.execute_command("CLUSTER", "INFO")
    except redis.ResponseError:
        return {}
    fields = reply if isinstance(reply, dict) else _info_fields(str(reply))
    state = fields.get("cluster_state")
    return {"cluster_state": str(state)} if state is not None else {}


def _info_fields(text: str) -> dict[str, str]:
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, _, value in pairs}


def _probes(key: str, *, waits: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(name, command) for every command mcpsec sends or its scripts call, each in a form
    that changes nothing. INCR is the one exception: it writes the probe key, deleted after."""
    wait = (("wait", ("WAIT", "0", "1")),) if waits else ()  # 0 replicas: answers at once
    return (
        ("evalsha", ("EVALSHA", _NO_SCRIPT, "1", key)),
        ("script load", ("SCRIPT", "LOAD", "return 1")),
        ("del", ("DEL", key)),
        ("exists", ("EXISTS", key)),
        ("get", ("GET", key)),
        ("mget", ("MGET", key)),
        ("set", ("SET", key, "0", "XX")),
        ("incr", ("INCR", key)),
        ("persist", ("PERSIST", key)),
        ("pexpireat", ("PEXPIREAT", key, "1")),
        ("pttl", ("PTTL", key)),
        ("hdel", ("HDEL", key, "f")),
        ("hget", ("HGET", key, "f")),
        ("hgetall", ("HGETALL", key)),
        ("hincrby", ("HINCRBY", key, "f", "not-a-number")),
        ("hmget", ("HMGET", key, "f")),
        ("hset", ("HSET", key, "f", "v", "odd")),
        ("zadd", ("ZADD", key, "XX", "0", "m")),
        ("zrange", ("ZRANGE", key, "0", "0")),
        ("zrangebylex", ("ZRANGEBYLEX", key, "-", "+")),
        ("zrangebyscore", ("ZRANGEBYSCORE", key, "0", "0")),
        ("zrem", ("ZREM", key, "m")),
        ("xadd", ("XADD", key, "NOMKSTREAM", "*", "d", "x")),
        ("xrange", ("XRANGE", key, "-", "+", "COUNT", "1")),
        ("xread", ("XREAD", "COUNT", "1", "STREAMS", key, "0-0")),
        ("xrevrange", ("XREVRANGE", key, "+", "-", "COUNT", "1")),
        ("xtrim", ("XTRIM", key, "MAXLEN", "0")),
        ("time", ("TIME",)),
        ("ping", ("PING",)),
        *wait,
    )


def acl_facts(node: Any, key: str, *, waits: bool = False) -> dict[str, str]:
    """Who this connection is, and which commands mcpsec needs it may not run: refused
    outright (`acl_denied`), or refused on keys under the prefix (`acl_denied_keys`)."""
    user = _whoami(node)
    dry_user = user if user is not None and _may_dry_run(node, user) else None
    refusals: dict[str, str] = {}
    try:
        for name, command in _probes(key, waits=waits):
            if name == "incr" and "del" in refusals:
                continue  # it could not be undone
            why = _dry_run(node, dry_user, command) if dry_user else _probe(node, command)
            if why:
                refusals[name] = why
    finally:
        if dry_user is None and "del" not in refusals:
            _forget(node, key)
    return {
        "acl_user": user or "",
        "acl_probe_key": key,
        "acl_denied": _names(refusals, "command"),
        "acl_denied_keys": _names(refusals, "key"),
    }


def _names(refusals: dict[str, str], why: str) -> str:
    return ", ".join(name for name, reason in refusals.items() if reason == why)


def _whoami(node: Any) -> str | None:
    try:
        return str(node.execute_command("ACL", "WHOAMI"))
    except redis.ResponseError:  # not allowed, or a server without ACLs
        return None


def _may_dry_run(node: Any, user: str) -> bool:
    try:
        return bool(node.execute_command("ACL", "DRYRUN", user, "PING") == "OK")
    except redis.ResponseError:
        return False


def _dry_run(node: Any, user: str, command: Sequence[str]) -> str | None:
    """ "key" or "command" when ACL DRYRUN says no, None when it says OK."""
    try:
        reply = str(node.execute_command("ACL", "DRYRUN", user, *command))
    except redis.ResponseError:  # a form DRYRUN will not take: ask the server itself
        return _probe(node, command)
    if reply == "OK":
        return None
    return _refused(reply)


def _probe(node: Any, command: Sequence[str]) -> str | None:
    """ "key" or "command" when the server answers NOPERM, None for anything else: Redis
    checks ACL rules before running a command (and before a cluster redirects it)."""
    try:
        node.execute_command(*command)
    except redis.exceptions.NoPermissionError as e:
        return _refused(str(e))
    except redis.ResponseError:
        return None
    return None


def _refused(message: str) -> str:
    """ "command" when Redis refused the command itself ("... no permissions to run the 'xadd'
    command"), else "key". Not a search for the word "key": since Redis 7.2 the message names
    the user, and a user named `apikeys` must not turn a refused command into a refused key."""
    return "command" if _RUN_REFUSED.search(message) else "key"


def _forget(node: Any, key: str) -> None:
    # MOVED on a cluster node that does not own the probe key: nothing was written there.
    with suppress(redis.ResponseError):
        node.execute_command("DEL", key)
