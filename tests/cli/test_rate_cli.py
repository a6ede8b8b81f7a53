"""`mcpsec rate` as operators and scripts use it: verdicts as exit codes, buckets that show
without being charged, overrides, listing and paging, resets, policies from config, the
watch view when piped, and a store that does not answer. Store-bound tests run on the
default SQLite file and on a real redis-server (each test under its own key prefix)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import pytest

from tests.support.cli import Ran
from tests.support.redis_servers import free_port

DECISION_FIELDS = {"allowed", "limit", "remaining", "retry_after", "reset_after"}
VIEW_FIELDS = {
    "identity",
    "tokens",
    "capacity",
    "refill_per_second",
    "seconds_until_full",
    "policy",
    "override",
}
ROW_FIELDS = {"identity", "bucket", "tokens", "capacity", "refill_per_second", "seconds_until_full"}
DEFAULT_POLICIES = [
    {"role": "guest", "capacity": 50, "refill_per_second": 1, "default": True},
    {"role": "user", "capacity": 200, "refill_per_second": 5, "default": False},
    {"role": "premium", "capacity": 1000, "refill_per_second": 20, "default": False},
    {"role": "admin", "capacity": 5000, "refill_per_second": 100, "default": False},
]
NO_REFILL = ("--capacity", "10", "--refill", "0")  # levels that do not move while a test runs


class Runner(Protocol):
    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> Ran: ...


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis_server),
    ]
)
def cli(request: pytest.FixtureRequest, mcpsec: Runner) -> Runner:
    """`mcpsec` on the default SQLite file, or on the session's redis-server under a key
    prefix of this test's own, so that tests never see each other's buckets."""
    if request.param == "sqlite":
        return mcpsec
    url = request.getfixturevalue("redis_server").url
    prefix = {"MCPSEC_STORE_PREFIX": f"t{uuid4().hex[:12]}:"}

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
        return mcpsec("--store", url, *args, input=input, env=prefix | (env or {}))

    return run


def one_error_line(ran: Ran) -> bool:
    return (
        ran.stderr.count("\n") == 1
        and ran.stderr.startswith("mcpsec: error: ")
        and "Traceback" not in ran.stderr
    )


def assert_usage_error(ran: Ran, *words: str) -> None:
    assert ran.exit_code == 2, (ran.stdout, ran.stderr)
    assert one_error_line(ran), ran.stderr
    assert ran.stdout == ""
    for word in words:
        assert word in ran.stderr


def check(cli: Runner, identity: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """`rate check --json`: the decision document, after asserting the exit code matches it."""
    ran = cli("rate", "check", identity, "--json", *args, env=env)
    assert "Traceback" not in ran.stderr
    doc = json.loads(ran.stdout)
    assert ran.exit_code == (0 if doc["allowed"] else 1), (ran.exit_code, doc, ran.stderr)
    return doc


def show(cli: Runner, identity: str, *args: str) -> Any:
    ran = cli("rate", "show", identity, "--json", *args)
    assert ran.exit_code == 0, ran.stderr
    return json.loads(ran.stdout)


def listed(cli: Runner, *args: str) -> Any:
    ran = cli("rate", "list", "--json", *args)
    assert ran.exit_code == 0, ran.stderr
    return json.loads(ran.stdout)


def levels(cli: Runner, *args: str) -> dict[str, float]:
    """identity -> tokens, for every bucket `rate list` shows (one page is enough here)."""
    doc = listed(cli, *args)
    assert doc["next_cursor"] is None
    return {b["identity"]: b["tokens"] for b in doc["buckets"]}


def spend(cli: Runner, costs: dict[str, int]) -> None:
    """Charge each identity's capacity-10, no-refill bucket the given cost."""
    for identity, cost in costs.items():
        assert check(cli, identity, *NO_REFILL, "--cost", str(cost))["allowed"] is True


def table_rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def with_config(cli: Runner, path: Path) -> Runner:
    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
        return cli("--config", str(path), *args, input=input, env=env)

    return run


# -- check ------------------------------------------------------------------------------


def test_check_allows_capacity_then_limits_with_exit_1(cli: Runner) -> None:
    limit = ("--capacity", "3", "--refill", "0")
    docs = [check(cli, "alice", *limit) for _ in range(3)]
    for doc in docs:
        assert set(doc) == DECISION_FIELDS
    assert [d["allowed"] for d in docs] == [True, True, True]
    assert [d["remaining"] for d in docs] == [2, 1, 0]
    assert {d["limit"] for d in docs} == {3}
    assert [d["retry_after"] for d in docs] == [0, 0, 0]

    limited = cli("rate", "check", "alice", "--json", *limit)
    assert limited.exit_code == 1
    doc = json.loads(limited.stdout)
    assert set(doc) == DECISION_FIELDS
    assert (doc["allowed"], doc["limit"], doc["remaining"]) == (False, 3, 0)
    assert doc["retry_after"] is None  # refill 0: no wait would ever let it through
    assert doc["reset_after"] is None

    human = cli("rate", "check", "alice", *limit)
    assert (human.exit_code, human.stdout.strip()) == (
        1,
        "limited: retry never (no refill) (explicit)",
    )
    assert human.stderr == ""


def test_check_quiet_prints_only_the_verdict(mcpsec: Runner) -> None:
    limit = ("--capacity", "1", "--refill", "0")
    ok = mcpsec("rate", "check", "alice", "--quiet", *limit)
    assert (ok.exit_code, ok.stdout) == (0, "true\n")
    limited = mcpsec("rate", "check", "alice", "--quiet", *limit)
    assert (limited.exit_code, limited.stdout) == (1, "false\n")


def test_check_human_line_and_other_identities_are_separate(cli: Runner) -> None:
    ran = cli("rate", "check", "alice", "--capacity", "3", "--refill", "0")
    assert (ran.exit_code, ran.stdout.strip()) == (0, "allowed: 2/3 left (explicit)")
    for _ in range(2):
        check(cli, "alice", "--capacity", "3", "--refill", "0")
    assert check(cli, "alice", "--capacity", "3", "--refill", "0")["allowed"] is False
    assert check(cli, "bob", "--capacity", "3", "--refill", "0")["remaining"] == 2


def test_cost_takes_that_many_tokens_or_none(cli: Runner) -> None:
    limit = ("--capacity", "3", "--refill", "0")
    assert check(cli, "alice", *limit, "--cost", "2")["remaining"] == 1
    refused = check(cli, "alice", *limit, "--cost", "2")
    assert (refused["allowed"], refused["remaining"]) == (False, 1)  # nothing taken
    assert check(cli, "alice", *limit, "--cost", "1")["remaining"] == 0


def test_role_user_gets_200_at_5_per_second(cli: Runner) -> None:
    doc = check(cli, "alice", "--role", "user")
    assert (doc["allowed"], doc["limit"], doc["remaining"]) == (True, 200, 199)
    assert doc["reset_after"] == pytest.approx(1 / 5)  # one token short, at 5 a second
    assert cli("rate", "check", "bob", "--role", "user").stdout.strip().endswith("(role:user)")


def test_no_role_gets_the_default_guest_limit(cli: Runner) -> None:
    doc = check(cli, "alice")
    assert (doc["limit"], doc["remaining"]) == (50, 49)


@pytest.mark.parametrize(
    ("roles", "limit"),
    [
        (("user", "premium"), 1000),
        (("premium", "user"), 1000),
        (("guest", "admin", "user"), 5000),
    ],
)
def test_several_roles_get_the_most_generous_limit(
    cli: Runner, roles: tuple[str, ...], limit: int
) -> None:
    args = [a for role in roles for a in ("--role", role)]
    assert check(cli, "alice", *args)["limit"] == limit


def test_unknown_role_is_a_usage_error_naming_it(mcpsec: Runner) -> None:
    ran = mcpsec("rate", "check", "alice", "--role", "ghost")
    assert_usage_error(ran, "'ghost'")
    assert_usage_error(mcpsec("rate", "show", "alice", "--role", "ghost"), "'ghost'")
    assert levels(mcpsec) == {}  # nothing was charged


@pytest.mark.parametrize(
    "args",
    [
        ("--role", "user", "--capacity", "3"),
        ("--role", "user", "--capacity", "3", "--refill", "0"),
        ("--capacity", "3"),
        ("--refill", "1"),
    ],
    ids=["role-and-capacity", "role-and-limit", "capacity-alone", "refill-alone"],
)
def test_role_and_limit_options_that_do_not_go_together(
    mcpsec: Runner, args: tuple[str, ...]
) -> None:
    assert_usage_error(mcpsec("rate", "check", "alice", *args))
    assert levels(mcpsec) == {}


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--capacity", "0", "--refill", "1"), "capacity"),
        (("--capacity", "-3", "--refill", "1"), "capacity"),
        (("--capacity", "3", "--refill", "-1"), "refill"),
        (("--capacity", "3", "--refill", "0", "--cost", "4"), "cost 4"),
        (("--role", "user", "--cost", "201"), "cost 201"),
        (("--capacity", "3", "--refill", "0", "--cost", "0"), "cost"),
        (("--capacity", "3", "--refill", "0", "--cost", "-1"), "cost"),
    ],
    ids=[
        "capacity-0",
        "capacity-negative",
        "refill-negative",
        "cost-over-capacity",
        "cost-over-role-capacity",
        "cost-0",
        "cost-negative",
    ],
)
def test_values_that_break_a_rule_are_exit_2_with_one_line(
    mcpsec: Runner, args: tuple[str, ...], word: str
) -> None:
    assert_usage_error(mcpsec("rate", "check", "alice", *args), word)
    assert_usage_error(mcpsec("rate", "check", "alice", "--json", *args), word)
    assert levels(mcpsec) == {}


def test_bad_identity_is_a_usage_error(mcpsec: Runner) -> None:
    assert_usage_error(mcpsec("rate", "check", "has space"), "identity")
    assert_usage_error(mcpsec("rate", "show", "{tag}"), "identity")


# -- show -------------------------------------------------------------------------------


def test_show_consumes_nothing(cli: Runner) -> None:
    limit = ("--capacity", "3", "--refill", "0")
    assert check(cli, "alice", *limit)["remaining"] == 2
    for _ in range(2):
        view = show(cli, "alice", *limit)
        assert (view["tokens"], view["capacity"]) == (2, 3)
        assert view["seconds_until_full"] is None  # refill 0: never full again
    assert check(cli, "alice", *limit)["remaining"] == 1  # not 0 or less: the shows took none


def test_identity_never_seen_is_full_and_show_creates_no_bucket(cli: Runner) -> None:
    view = show(cli, "newcomer")
    assert set(view) == VIEW_FIELDS
    assert view["identity"] == "newcomer"
    assert view["tokens"] == view["capacity"] == 50
    assert view["refill_per_second"] == 1
    assert view["seconds_until_full"] == 0
    assert (view["policy"], view["override"]) == ("role:guest", None)

    user = show(cli, "newcomer", "--role", "user")
    assert (user["tokens"], user["capacity"], user["refill_per_second"]) == (200, 200, 5)
    assert user["policy"] == "role:user"
    assert "newcomer" not in levels(cli)


def test_show_human_and_quiet(cli: Runner) -> None:
    human = cli("rate", "show", "alice", "--role", "premium")
    assert human.exit_code == 0
    fields = dict(line.split(":", 1) for line in human.stdout.splitlines())
    assert fields["identity"].strip() == "alice"
    assert float(fields["capacity"]) == 1000
    assert fields["policy"].strip() == "role:premium"
    quiet = cli("rate", "show", "alice", "--quiet")
    assert (quiet.exit_code, quiet.stdout) == (0, "alice\n")


# -- override ---------------------------------------------------------------------------


def test_override_set_show_check_unset(cli: Runner) -> None:
    ran = cli("rate", "override", "set", "ci-bot", "--capacity", "5", "--refill", "0", "--json")
    assert ran.exit_code == 0, ran.stderr
    made = json.loads(ran.stdout)
    assert made["identity"] == "ci-bot" and made["expires_at"] is None
    assert (made["capacity"], made["refill_per_second"]) == (5, 0)

    view = show(cli, "ci-bot", "--role", "user")
    assert view["policy"] == "override"
    assert view["override"]["capacity"] == 5 and view["override"]["refill_per_second"] == 0
    assert (view["tokens"], view["capacity"]) == (5, 5)

    doc = check(cli, "ci-bot", "--role", "user")
    assert (doc["limit"], doc["remaining"]) == (5, 4)
    human = cli("rate", "check", "ci-bot", "--role", "user")
    assert human.stdout.strip() == "allowed: 3/5 left (override)"
    # an explicit limit is for this one call and ignores the override
    assert check(cli, "ci-bot", "--capacity", "100", "--refill", "0")["limit"] == 100

    gone = cli("rate", "override", "unset", "ci-bot", "--json")
    assert gone.exit_code == 0, gone.stderr
    assert json.loads(gone.stdout)["identity"] == "ci-bot"
    view = show(cli, "ci-bot", "--role", "user")
    assert (view["policy"], view["override"], view["capacity"]) == ("role:user", None, 200)
    assert check(cli, "ci-bot", "--role", "user")["limit"] == 200

    again = cli("rate", "override", "unset", "ci-bot")
    assert again.exit_code == 3
    assert one_error_line(again) and "ci-bot" in again.stderr


def test_override_with_ttl_has_an_expiry(cli: Runner) -> None:
    before = datetime.now(UTC)
    ran = cli(
        "rate", "override", "set", "ci-bot", "--capacity", "5", "--refill", "0", "--ttl", "1h"
    )
    assert ran.exit_code == 0, ran.stderr
    assert "expires_at" in ran.stdout
    view = show(cli, "ci-bot")
    assert view["policy"] == "override"
    expires = datetime.fromisoformat(view["override"]["expires_at"])
    assert before + timedelta(minutes=59) < expires < before + timedelta(minutes=61)
    assert check(cli, "ci-bot", "--role", "admin")["limit"] == 5


def test_override_unset_of_an_identity_never_overridden_is_not_found(cli: Runner) -> None:
    ran = cli("rate", "override", "unset", "nobody", "--json")
    assert ran.exit_code == 3 and ran.stdout == ""
    assert one_error_line(ran) and "nobody" in ran.stderr


@pytest.mark.parametrize("ttl", ["bogus", "0s", "-1h", "1x"])
def test_override_bad_ttl_is_exit_2_and_sets_nothing(cli: Runner, ttl: str) -> None:
    ran = cli("rate", "override", "set", "ci-bot", "--capacity", "5", "--refill", "0", "--ttl", ttl)
    assert_usage_error(ran, "ttl")
    assert show(cli, "ci-bot")["override"] is None


@pytest.mark.parametrize(
    "args", [("--capacity", "0", "--refill", "1"), ("--capacity", "5", "--refill", "-1")]
)
def test_override_bad_limit_is_exit_2(mcpsec: Runner, args: tuple[str, ...]) -> None:
    assert_usage_error(mcpsec("rate", "override", "set", "ci-bot", *args))
    assert show(mcpsec, "ci-bot")["override"] is None


# -- list -------------------------------------------------------------------------------


def test_list_shows_checked_identities_with_their_levels(cli: Runner) -> None:
    spend(cli, {"bot-1": 2, "bot-2": 7, "bot-3": 1, "human-1": 4})

    table = cli("rate", "list")
    assert table.exit_code == 0, table.stderr
    rows = table_rows(table.stdout)
    assert rows[0] == ["IDENTITY", "BUCKET", "TOKENS", "CAPACITY", "REFILL/S", "FULL", "IN"]
    assert {r[0] for r in rows[1:]} == {"bot-1", "bot-2", "bot-3", "human-1"}
    assert ["bot-2", "identity", "3.0", "10", "0", "never"] in rows

    doc = listed(cli)
    assert set(doc) == {"buckets", "next_cursor"} and doc["next_cursor"] is None
    for bucket in doc["buckets"]:
        assert set(bucket) == ROW_FIELDS
        assert (bucket["bucket"], bucket["capacity"], bucket["refill_per_second"]) == (
            "identity",
            10,
            0,
        )
    assert levels(cli) == {"bot-1": 8, "bot-2": 3, "bot-3": 9, "human-1": 6}


def test_list_match_filters_by_glob(cli: Runner) -> None:
    spend(cli, {"bot-1": 2, "bot-2": 7, "human-1": 4, "robot-9": 1})
    assert levels(cli, "--match", "bot-*") == {"bot-1": 8, "bot-2": 3}
    assert levels(cli, "--match", "*-1") == {"bot-1": 8, "human-1": 6}
    assert levels(cli, "--match", "nothing-*") == {}
    table = table_rows(cli("rate", "list", "--match", "bot-*").stdout)
    assert [r[0] for r in table] == ["IDENTITY", "bot-1", "bot-2"]


def test_list_quiet_prints_one_identity_per_line(mcpsec: Runner) -> None:
    spend(mcpsec, {"bot-1": 2, "bot-2": 7})
    quiet = mcpsec("rate", "list", "--quiet")
    assert (quiet.exit_code, quiet.stdout) == (0, "bot-1\nbot-2\n")


def test_list_pages_with_a_cursor_without_repeats(cli: Runner) -> None:
    names = [f"bot-{i}" for i in range(5)]
    spend(cli, dict.fromkeys(names, 1) | {"human-1": 1})

    first = listed(cli, "--limit", "2")
    assert len(first["buckets"]) == 2 and first["next_cursor"]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        doc = listed(
            cli, "--limit", "2", "--match", "bot-*", *(["--cursor", cursor] if cursor else [])
        )
        assert len(doc["buckets"]) <= 2
        seen += [b["identity"] for b in doc["buckets"]]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "the cursor does not advance"
    assert sorted(seen) == names  # every one, none twice, no human-1
    assert pages >= 3

    human = cli("rate", "list", "--limit", "2")
    assert human.exit_code == 0
    assert len(table_rows(human.stdout)) == 3  # header and two rows
    assert "--cursor" in human.stderr


@pytest.mark.parametrize("limit", ["0", "1001"])
def test_list_limit_out_of_range_is_exit_2(mcpsec: Runner, limit: str) -> None:
    assert_usage_error(mcpsec("rate", "list", "--limit", limit), "limit")


# -- reset ------------------------------------------------------------------------------


def test_reset_fills_one_identity_again(cli: Runner) -> None:
    limit = ("--capacity", "3", "--refill", "0")
    for _ in range(3):
        check(cli, "alice", *limit)
    check(cli, "bob", *limit)
    assert check(cli, "alice", *limit)["allowed"] is False

    ran = cli("rate", "reset", "alice", "--json")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == {"reset": 1}
    view = show(cli, "alice", *limit)
    assert view["tokens"] == view["capacity"] == 3
    assert "alice" not in levels(cli)
    assert check(cli, "alice", *limit)["remaining"] == 2
    assert show(cli, "bob", *limit)["tokens"] == 2  # untouched


def test_reset_of_an_identity_with_a_full_bucket_resets_nothing(cli: Runner) -> None:
    ran = cli("rate", "reset", "nobody")
    assert (ran.exit_code, ran.stdout.strip()) == (0, "reset 0 bucket(s)")


def test_reset_by_match_needs_yes_and_resets_only_matching(cli: Runner) -> None:
    spend(cli, {"bot-1": 2, "bot-2": 7, "human-1": 4, "robot-1": 5})

    refused = cli("rate", "reset", "--match", "bot-*")
    assert_usage_error(refused, "--yes")
    assert levels(cli) == {"bot-1": 8, "bot-2": 3, "human-1": 6, "robot-1": 5}

    ran = cli("rate", "reset", "--match", "bot-*", "--yes")
    assert (ran.exit_code, ran.stdout.strip()) == (0, "reset 2 bucket(s)")
    assert levels(cli) == {"human-1": 6, "robot-1": 5}
    assert show(cli, "bot-2", *NO_REFILL)["tokens"] == 10
    assert show(cli, "human-1", *NO_REFILL)["tokens"] == 6


@pytest.mark.parametrize(
    "args",
    [("alice", "--match", "bot-*"), ("alice", "--match", "bot-*", "--yes"), ()],
    ids=["both", "both-yes", "neither"],
)
def test_reset_needs_exactly_one_of_identity_or_match(
    mcpsec: Runner, args: tuple[str, ...]
) -> None:
    spend(mcpsec, {"alice": 3})
    assert_usage_error(mcpsec("rate", "reset", *args))
    assert levels(mcpsec) == {"alice": 7}


# -- policies -----------------------------------------------------------------------------


def test_policies_are_the_built_in_set_with_guest_the_default(cli: Runner) -> None:
    table = cli("rate", "policies")
    assert table.exit_code == 0, table.stderr
    assert table_rows(table.stdout) == [
        ["ROLE", "CAPACITY", "REFILL/S", "DEFAULT"],
        ["guest", "50", "1", "yes"],
        ["user", "200", "5"],
        ["premium", "1000", "20"],
        ["admin", "5000", "100"],
    ]
    doc = cli("rate", "policies", "--json")
    assert json.loads(doc.stdout) == DEFAULT_POLICIES


USER_ONLY = """\
[rate]
default_role = "user"

[rate.roles.user]
capacity = 7
refill_per_second = 1
"""


@pytest.mark.parametrize("where", ["flag", "xdg"])
def test_rate_roles_in_config_replace_the_defaults(cli: Runner, home: Path, where: str) -> None:
    run = cli
    if where == "flag":
        run = with_config(cli, write_config(home / "rate.toml", USER_ONLY))
    else:
        write_config(home / "cfg" / "mcpsec" / "config.toml", USER_ONLY)

    ran = run("rate", "policies", "--json")
    assert ran.exit_code == 0, ran.stderr
    assert json.loads(ran.stdout) == [
        {"role": "user", "capacity": 7, "refill_per_second": 1, "default": True}
    ]
    assert table_rows(run("rate", "policies").stdout)[1:] == [["user", "7", "1", "yes"]]
    assert check(run, "alice", "--role", "user")["limit"] == 7
    assert check(run, "bob", "--role", "admin")["limit"] == 7  # no limit of its own: default
    assert check(run, "carol")["limit"] == 7


def test_rate_roles_for_a_role_that_does_not_exist_is_exit_4(cli: Runner, home: Path) -> None:
    path = write_config(
        home / "ghost.toml", "[rate.roles.ghost]\ncapacity = 7\nrefill_per_second = 1\n"
    )
    for args in (("rate", "policies"), ("rate", "check", "alice", "--json")):
        ran = cli("--config", str(path), *args)
        assert ran.exit_code == 4, ran.stderr
        assert one_error_line(ran) and "ghost" in ran.stderr
        assert ran.stdout == ""


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ('[rate]\ndefault_role = "nobody"\n', "nobody"),
        ("[rate.roles.user]\ncapacity = 0\nrefill_per_second = 1\n", "user"),
        ("[rate.roles.user]\ncapacity = 7\n", "refill_per_second"),
        ('[rate]\nfail_open = "maybe"\n', "fail_open"),
    ],
    ids=["default-role-without-limit", "capacity-0", "refill-missing", "fail-open-not-bool"],
)
def test_other_bad_rate_config_is_exit_4(mcpsec: Runner, home: Path, text: str, word: str) -> None:
    path = write_config(home / "bad.toml", text)
    ran = mcpsec("--config", str(path), "rate", "policies")
    assert ran.exit_code == 4, ran.stderr
    assert one_error_line(ran) and word in ran.stderr


# -- watch ------------------------------------------------------------------------------


def test_watch_piped_prints_each_refresh_busiest_first(cli: Runner) -> None:
    spend(cli, {"w-half": 5, "w-low": 9, "w-most": 2})
    ran = cli("rate", "watch", "--count", "2", "--interval", "0.1")
    assert ran.exit_code == 0, ran.stderr
    blocks = [b for b in ran.stdout.split("\n\n") if b.strip()]
    assert len(blocks) == 2
    for block in blocks:
        rows = table_rows(block)
        assert rows[0] == ["3", "busiest", "bucket(s)"]
        assert rows[1][0] == "IDENTITY"
        assert [r[0] for r in rows[2:]] == ["w-low", "w-half", "w-most"]
        assert [r[2] for r in rows[2:]] == ["1.0", "5.0", "8.0"]
    assert "\x1b" not in ran.stdout  # piped: plain text, no cursor movement


def test_watch_match_and_top(cli: Runner) -> None:
    spend(cli, {"w-half": 5, "w-low": 9, "w-most": 2, "other": 10})
    ran = cli("rate", "watch", "--count", "1", "--match", "w-*", "--top", "2")
    assert ran.exit_code == 0, ran.stderr
    rows = table_rows(ran.stdout)
    assert rows[0] == ["2", "busiest", "bucket(s)"]
    assert [r[0] for r in rows[2:]] == ["w-low", "w-half"]


@pytest.mark.parametrize(
    ("args", "word"),
    [
        (("--interval", "0"), "--interval"),
        (("--interval", "0.05"), "--interval"),
        (("--count", "0"), "--count"),
        (("--count", "-1"), "--count"),
        (("--top", "0"), "--top"),
    ],
)
def test_watch_bad_options_are_exit_2(mcpsec: Runner, args: tuple[str, ...], word: str) -> None:
    assert_usage_error(mcpsec("rate", "watch", "--count", "1", *args), word)


# -- store unavailable --------------------------------------------------------------------


@pytest.fixture
def down(mcpsec: Runner) -> Runner:
    """`mcpsec` pointed at a Redis port where nothing listens, with a short store timeout."""
    url = f"redis://127.0.0.1:{free_port()}/0"

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Ran:
        return mcpsec(
            "--store", url, *args, input=input, env={"MCPSEC_STORE_TIMEOUT": "0.5s", **(env or {})}
        )

    return run


def test_check_fails_open_by_default_and_says_so(down: Runner) -> None:
    ran = down("rate", "check", "alice", "--json")
    assert ran.exit_code == 0
    assert json.loads(ran.stdout)["allowed"] is True
    assert ran.stderr.count("\n") == 1
    assert ran.stderr.startswith("mcpsec: warning: ") and "did not answer" in ran.stderr
    assert "Traceback" not in ran.stderr

    human = down("rate", "check", "alice", "--role", "user")
    assert human.exit_code == 0 and human.stdout.startswith("allowed")
    assert "did not answer" in human.stderr


@pytest.mark.parametrize("setting", ["env", "config"])
def test_check_fails_closed_when_told(down: Runner, home: Path, setting: str) -> None:
    if setting == "env":
        ran = down("rate", "check", "alice", "--json", env={"MCPSEC_RATE_FAIL_OPEN": "false"})
    else:
        path = write_config(home / "closed.toml", "[rate]\nfail_open = false\n")
        ran = down("--config", str(path), "rate", "check", "alice", "--json")
    assert ran.exit_code == 1
    assert json.loads(ran.stdout)["allowed"] is False
    assert ran.stderr.startswith("mcpsec: warning: ") and "did not answer" in ran.stderr
    assert ran.stderr.count("\n") == 1


def test_fail_closed_human_line_does_not_claim_the_role_never_refills(down: Runner) -> None:
    ran = down("rate", "check", "alice", "--role", "user", env={"MCPSEC_RATE_FAIL_OPEN": "0"})
    assert ran.exit_code == 1
    assert ran.stdout.startswith("limited")
    assert "no refill" not in ran.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("show", "alice"),
        ("show", "alice", "--json"),
        ("list",),
        ("list", "--json"),
        ("reset", "alice"),
        ("reset", "--match", "bot-*", "--yes"),
        ("override", "set", "alice", "--capacity", "5", "--refill", "0"),
        ("override", "unset", "alice"),
        ("watch", "--count", "1"),
    ],
    ids=[
        "show",
        "show-json",
        "list",
        "list-json",
        "reset",
        "reset-match",
        "override-set",
        "override-unset",
        "watch",
    ],
)
def test_commands_that_need_the_store_exit_5_with_one_line(
    down: Runner, args: tuple[str, ...]
) -> None:
    ran = down("rate", *args)
    assert ran.exit_code == 5, (ran.stdout, ran.stderr)
    assert one_error_line(ran), ran.stderr
    assert ran.stdout == ""


def test_policies_need_no_store(down: Runner) -> None:
    ran = down("rate", "policies", "--json")
    assert ran.exit_code == 0 and json.loads(ran.stdout) == DEFAULT_POLICIES


# -- a real process -----------------------------------------------------------------------


def test_check_exit_codes_through_a_real_process(mcpsec_process: Runner) -> None:
    limit = ("--capacity", "2", "--refill", "0")
    codes = [mcpsec_process("rate", "check", "alice", *limit).exit_code for _ in range(3)]
    assert codes == [0, 0, 1]
    ran = mcpsec_process("rate", "check", "alice", "--json", *limit)
    assert ran.exit_code == 1
    assert json.loads(ran.stdout) == {
        "allowed": False,
        "limit": 2,
        "remaining": 0,
        "retry_after": None,
        "reset_after": None,
    }
    bad = mcpsec_process("rate", "check", "alice", "--role", "ghost")
    assert bad.exit_code == 2 and one_error_line(bad) and "ghost" in bad.stderr


@pytest.mark.redis_server
def test_check_exit_codes_through_a_real_process_on_redis(
    mcpsec_process: Runner, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("redis_server").url
    env = {"MCPSEC_STORE_URL": url, "MCPSEC_STORE_PREFIX": f"t{uuid4().hex[:12]}:"}
    limit = ("--capacity", "2", "--refill", "0")
    codes = [mcpsec_process("rate", "check", "alice", *limit, env=env).exit_code for _ in range(3)]
    assert codes == [0, 0, 1]
    reset = mcpsec_process("rate", "reset", "alice", env=env)
    assert (reset.exit_code, reset.stdout.strip()) == (0, "reset 1 bucket(s)")
    assert mcpsec_process("rate", "check", "alice", *limit, env=env).exit_code == 0
