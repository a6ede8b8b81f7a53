"""Redis ACL users against a real redis-server: the password from the environment or a private
file (never argv), refusals with the documented exit codes, the password in no output, no
config listing, no repr and no stored event; and `doctor` naming what a user may not do."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from mcpsec.core.config import load_settings
from mcpsec.core.store_connection import redis_options

from tests.support.cli import Ran, assert_error_line, assert_store_failure, run_cli
from tests.support.redis_servers import RedisServer, command, require_binaries, start_redis_server

pytestmark = pytest.mark.redis_server

PASSWORD = "correct-horse-battery-staple-42"
WRONG = "wrong-but-distinctive-password-99"
USERS = {
    "mcp": ("~mcpsec:*", "+@all"),
    "limited": ("~mcpsec:*", "+@all", "-xadd", "-evalsha"),  # may ACL DRYRUN
    "probed": ("~mcpsec:*", "+@all", "-@admin", "-hset", "-xadd"),  # may not: probes
    "elsewhere": ("~other:*", "+@all"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    require_binaries("redis-server", "redis-cli")
    with start_redis_server(tmp_path_factory.mktemp("acl")) as started:
        for user, rules in USERS.items():
            command(started.port, "ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", *rules)
        yield started


def url_of(server: RedisServer, user: str | None = "mcp", password: str | None = None) -> str:
    userinfo = f"{user or ''}{':' + password if password else ''}@" if user or password else ""
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


def private_file(folder: Path, text: str, mode: int = 0o600) -> Path:
    path = folder / "redis.password"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def assert_no_password(ran: Ran, *secrets: str) -> None:
    for secret in secrets or (PASSWORD, WRONG):
        assert secret not in ran.output
    assert "Traceback" not in ran.output


def test_password_from_the_environment(tmp_path, server):
    env = {"MCPSEC_STORE_PASSWORD": PASSWORD}
    ran = run_cli(tmp_path, "--store", url_of(server), "keys", "create", "-n", "ci", env=env)
    assert ran.exit_code == 0, ran.output
    assert_no_password(ran)


def test_user_and_password_from_the_environment(tmp_path, server):
    env = {
        "MCPSEC_STORE_URL": url_of(server, user=None),
        "MCPSEC_STORE_USERNAME": "mcp",
        "MCPSEC_STORE_PASSWORD": PASSWORD,
    }
    ran = run_cli(tmp_path, "keys", "list", "--json", env=env)
    assert ran.exit_code == 0, ran.output


def test_password_from_a_private_file(tmp_path, server):
    env = {"MCPSEC_STORE_PASSWORD_FILE": str(private_file(tmp_path, PASSWORD))}
    ran = run_cli(tmp_path, "--store", url_of(server), "keys", "list", "--json", env=env)
    assert ran.exit_code == 0, ran.output


def test_password_file_named_in_the_config_file_relative_to_it(tmp_path, server):
    config = tmp_path / "cfg" / "mcpsec" / "config.toml"
    config.parent.mkdir(parents=True)
    private_file(config.parent, PASSWORD)
    config.write_text(
        f'[store]\nurl = "{url_of(server, user=None)}"\nusername = "mcp"\n'
        'password_file = "redis.password"\n'
    )
    ran = run_cli(tmp_path, "keys", "list", "--json")
    assert ran.exit_code == 0, ran.output


def test_a_password_file_others_can_read_is_refused(tmp_path, server):
    loose = private_file(tmp_path, PASSWORD, mode=0o644)
    env = {"MCPSEC_STORE_PASSWORD_FILE": str(loose)}
    ran = run_cli(tmp_path, "--store", url_of(server), "keys", "list", env=env)
    assert_error_line(ran, 4, "readable by others", str(loose))
    assert_no_password(ran)


@pytest.mark.parametrize(
    "args",
    [("keys", "list"), ("keys", "create", "-n", "ci"), ("rate", "list")],
)
@pytest.mark.parametrize("where", ["env", "file", "url"])
def test_a_wrong_password_is_one_line_exit_5_without_the_password(tmp_path, server, args, where):
    url, env = url_of(server), {}
    if where == "env":
        env["MCPSEC_STORE_PASSWORD"] = WRONG
    elif where == "file":
        env["MCPSEC_STORE_PASSWORD_FILE"] = str(private_file(tmp_path, WRONG))
    else:
        url = url_of(server, password=WRONG)
    ran = run_cli(tmp_path, "--store", url, *args, env=env)
    assert_store_failure(ran, "(authentication failed): invalid username-password pair")
    assert_no_password(ran)


def test_doctor_with_a_wrong_password_fails_the_store_without_the_password(tmp_path, server):
    env = {"MCPSEC_STORE_PASSWORD": WRONG}
    ran = run_cli(tmp_path, "--store", url_of(server), "doctor", "--json", env=env)
    assert ran.exit_code == 5
    store = next(c for c in json.loads(ran.stdout)["checks"] if c["name"] == "store")
    assert store["status"] == "fail" and "authentication failed" in store["detail"]
    assert_no_password(ran)


def test_a_password_in_the_url_and_in_the_settings_is_refused(tmp_path, server):
    env = {"MCPSEC_STORE_PASSWORD": PASSWORD}
    ran = run_cli(tmp_path, "--store", url_of(server, password=WRONG), "keys", "list", env=env)
    assert ran.exit_code == 4, ran.output
    assert "in one place" in ran.stderr
    assert_no_password(ran)


def test_config_show_never_shows_the_password(tmp_path, server):
    env = {
        "MCPSEC_STORE_URL": url_of(server, password=WRONG),
        "MCPSEC_STORE_PASSWORD": PASSWORD,
        "MCPSEC_STORE_PASSWORD_FILE": str(private_file(tmp_path, PASSWORD)),
    }
    shown = run_cli(tmp_path, "config", "show", "--json", env=env)
    assert shown.exit_code == 0, shown.output
    assert_no_password(shown)
    store = json.loads(shown.stdout)["store"]
    assert store["password"] == "<set by env MCPSEC_STORE_PASSWORD>"
    assert store["url"].startswith("redis://mcp:***@")
    human = run_cli(tmp_path, "config", "show", env=env)
    assert human.exit_code == 0
    assert_no_password(human)


def test_no_repr_holds_the_password(tmp_path, server):
    settings = load_settings(
        {
            "HOME": str(tmp_path),
            "MCPSEC_STORE_URL": url_of(server),
            "MCPSEC_STORE_PASSWORD": PASSWORD,
        }
    )
    options = redis_options(settings.store)
    store = settings.store.open()
    try:
        for value in (settings, settings.store, options, store, store.client):  # type: ignore[attr-defined]
            assert PASSWORD not in repr(value)
    finally:
        store.close()


def test_no_stored_event_or_record_holds_the_password(tmp_path, server):
    env = {"MCPSEC_STORE_PASSWORD": PASSWORD}
    assert (
        run_cli(tmp_path, "--store", url_of(server), "keys", "create", "-n", "a", env=env).exit_code
        == 0
    )
    tail = run_cli(tmp_path, "--store", url_of(server), "audit", "tail", "--json", env=env)
    assert tail.exit_code == 0 and tail.stdout.strip()
    assert_no_password(tail)
    admin = redis.Redis(port=server.port, decode_responses=True)
    try:
        readers: dict[str, Callable[[str], object]] = {
            "hash": admin.hgetall,
            "stream": admin.xrange,
            "string": admin.get,
            "zset": lambda k: admin.zrange(k, 0, -1),
        }
        for key in admin.scan_iter("mcpsec:*"):
            dump = readers[str(admin.type(key))](key)
            assert PASSWORD not in repr(dump), key
    finally:
        admin.close()


def doctor(home: Path, server: RedisServer, user: str) -> tuple[Ran, dict[str, Any]]:
    env = {"MCPSEC_STORE_USERNAME": user, "MCPSEC_STORE_PASSWORD": PASSWORD}
    ran = run_cli(home, "--store", url_of(server, user=None), "doctor", "--json", env=env)
    return ran, {c["name"]: c for c in json.loads(ran.stdout)["checks"]}


def test_doctor_passes_a_user_that_may_run_everything(tmp_path, server):
    ran, checks = doctor(tmp_path, server, "mcp")
    assert ran.exit_code == 0, ran.output
    assert checks["acl"]["status"] == "ok"
    assert "'mcp' may run every command mcpsec uses" in checks["acl"]["detail"]


def test_doctor_names_the_commands_a_user_may_not_run(tmp_path, server):
    ran, checks = doctor(tmp_path, server, "limited")
    assert ran.exit_code == 5
    assert checks["acl"]["status"] == "fail"
    assert "the ACL user 'limited' may not run: evalsha, xadd;" in checks["acl"]["detail"]
    assert "ACL SETUSER limited +evalsha +xadd ~mcpsec:*" in checks["acl"]["detail"]


def test_doctor_probes_a_user_who_may_not_dry_run_and_leaves_nothing(tmp_path, server):
    ran, checks = doctor(tmp_path, server, "probed")
    assert ran.exit_code == 5
    assert "the ACL user 'probed' may not run: hset, xadd;" in checks["acl"]["detail"]
    assert checks["persistence"]["status"] == "skip"  # CONFIG GET is an admin command
    assert command(server.port, "EXISTS", "mcpsec:_doctor:{probe}") == ":0"


def test_doctor_names_keys_outside_the_users_patterns(tmp_path, server):
    ran, checks = doctor(tmp_path, server, "elsewhere")
    assert ran.exit_code == 5
    detail = checks["acl"]["detail"]
    assert "may not use keys under mcpsec: with: evalsha, del" in detail
    assert "may not run" not in detail


def readme_acl_rules() -> list[str]:
    """The rules of the minimal user the README documents, as ACL SETUSER arguments."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("ACL SETUSER mcp on >PASSWORD ", 1)[1].split("```", 1)[0]
    return block.replace("\\\n", " ").split()


def test_the_minimal_user_the_readme_documents_runs_mcpsec(tmp_path, server):
    """Every command family, and doctor, with exactly the rules the README gives."""
    rules = readme_acl_rules()
    assert rules[:3] == ["~mcpsec:*", "resetchannels", "-@all"] and "+evalsha" in rules
    command(server.port, "ACL", "SETUSER", "minimal", "reset", "on", f">{PASSWORD}", *rules)
    env = {
        "MCPSEC_STORE_URL": url_of(server, user="minimal"),
        "MCPSEC_STORE_PASSWORD": PASSWORD,
        "MCPSEC_STORE_PREFIX": "mcpsec:minimal:",  # its own audit chain, under ~mcpsec:*
    }

    def ok(*args: str, code: int = 0, input: str | None = None) -> str:
        ran = run_cli(tmp_path, *args, env=env, input=input)
        assert ran.exit_code == code, (args, ran.output)
        return ran.stdout.strip()

    ok("config", "init")
    created = json.loads(ok("keys", "create", "-n", "minimal", "--json"))
    ok("keys", "verify", "-", input=created["api_key"])
    ok("keys", "list")
    ok("keys", "revoke", created["key_id"])
    ok("keys", "verify", "-", input=created["api_key"], code=1)
    tokens = json.loads(ok("token", "mint", "--subject", "s1", "--json"))
    ok("token", "verify", "-", input=tokens["access_token"])
    ok("token", "revoke", "--subject", "s1")
    ok("token", "verify", "-", input=tokens["access_token"], code=1)
    ok("rate", "check", "alice")
    ok("rate", "list")
    ok("rate", "reset", "alice")
    ok("audit", "tail")
    ok("audit", "verify")
    checks = {c["name"]: c for c in json.loads(ok("doctor", "--json"))["checks"]}
    assert checks["acl"]["status"] == "ok", checks["acl"]
