"""[rate] and [rate.roles.<role>] in config: fail_open, default_role, limits by role."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcpsec.core.config import load_settings, redacted
from mcpsec.core.config_file import render_default_config
from mcpsec.core.errors import ConfigError
from mcpsec.core.ratelimit import DEFAULT_LIMITS, Limit, RatePolicy


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def write_config(env: dict[str, str], text: str) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "mcpsec" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


CUSTOM_ROLES = """
[roles.free]
permissions = ["files:read"]
[roles.paid]
inherits = ["free"]
permissions = ["files:write"]
"""


# --- defaults and fail_open ------------------------------------------------------------------


def test_the_defaults(env: dict[str, str]) -> None:
    rate = load_settings(env).rate
    assert rate == RatePolicy()
    assert (rate.fail_open, rate.default_role) == (True, "guest")
    assert dict(rate.roles) == {
        "guest": Limit.of(50, 1),
        "user": Limit.of(200, 5),
        "premium": Limit.of(1000, 20),
        "admin": Limit.of(5000, 100),
    }


def test_the_rendered_default_config_gives_the_default_policy(env: dict[str, str]) -> None:
    write_config(env, render_default_config("sqlite:///x/y.db"))
    assert load_settings(env).rate == RatePolicy()


@pytest.mark.parametrize(("toml", "expected"), [("false", False), ("true", True)])
def test_fail_open_from_the_file(env: dict[str, str], toml: str, expected: bool) -> None:
    path = write_config(env, f"[rate]\nfail_open = {toml}\n")
    settings = load_settings(env)
    assert settings.rate.fail_open is expected
    assert settings.source_of("rate.fail_open") == f"file {path}"


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("false", False),
        ("0", False),
        ("no", False),
        ("off", False),
        (" FALSE ", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("On", True),
    ],
)
def test_fail_open_from_the_environment_beats_the_file(
    env: dict[str, str], word: str, expected: bool
) -> None:
    write_config(env, f"[rate]\nfail_open = {'false' if expected else 'true'}\n")
    env["MCPSEC_RATE_FAIL_OPEN"] = word
    settings = load_settings(env)
    assert settings.rate.fail_open is expected
    assert settings.source_of("rate.fail_open") == "env MCPSEC_RATE_FAIL_OPEN"


@pytest.mark.parametrize("word", ["maybe", "nope", "2", "tru"])
def test_fail_open_must_be_a_yes_or_no_word(env: dict[str, str], word: str) -> None:
    env["MCPSEC_RATE_FAIL_OPEN"] = word
    with pytest.raises(ConfigError, match=r"rate\.fail_open.*MCPSEC_RATE_FAIL_OPEN") as caught:
        load_settings(env)
    assert word in str(caught.value)


def test_fail_open_in_the_file_must_be_a_boolean(env: dict[str, str]) -> None:
    write_config(env, '[rate]\nfail_open = "sometimes"\n')
    with pytest.raises(ConfigError, match=r"rate\.fail_open.*sometimes"):
        load_settings(env)


def test_an_unknown_rate_setting_is_refused(env: dict[str, str]) -> None:
    write_config(env, "[rate]\nburst = 10\n")
    with pytest.raises(ConfigError, match=r"unknown setting `burst` in \[rate\]"):
        load_settings(env)


# --- [rate.roles.*] ----------------------------------------------------------------------------


def test_rate_roles_replace_the_defaults(env: dict[str, str]) -> None:
    write_config(
        env,
        "[rate.roles.guest]\ncapacity = 10\nrefill_per_second = 0.5\n"
        "[rate.roles.user]\ncapacity = 300\nrefill_per_second = 10\n",
    )
    rate = load_settings(env).rate
    assert dict(rate.roles) == {"guest": Limit.of(10, 0.5), "user": Limit.of(300, 10)}
    assert rate.default_role == "guest"
    assert rate.limit_for(["admin"]) == (Limit.of(10, 0.5), "guest")  # admin has no limit now
    assert rate.limit_for(["guest", "user"]) == (Limit.of(300, 10), "user")


def test_without_guest_the_least_generous_limit_is_the_default(env: dict[str, str]) -> None:
    write_config(
        env,
        "[rate.roles.admin]\ncapacity = 100\nrefill_per_second = 50\n"
        "[rate.roles.user]\ncapacity = 1000\nrefill_per_second = 2\n",
    )
    rate = load_settings(env).rate
    assert rate.default_role == "user"  # the slower sustained rate, whatever its burst
    assert rate.limit_for([]) == (Limit.of(1000, 2), "user")


def test_rate_roles_for_custom_roles(env: dict[str, str]) -> None:
    write_config(
        env,
        CUSTOM_ROLES + "[rate.roles.free]\ncapacity = 5\nrefill_per_second = 0\n"
        "[rate.roles.paid]\ncapacity = 50\nrefill_per_second = 1\n"
        '[rate]\ndefault_role = "free"\n',
    )
    rate = load_settings(env).rate
    assert rate.default_role == "free"
    assert rate.limit_for(["paid", "free"]) == (Limit.of(50, 1), "paid")
    assert rate.limit_for(["guest"]) == (Limit.of(5, 0), "free")


def test_a_limit_for_a_role_that_does_not_exist_is_refused(env: dict[str, str]) -> None:
    path = write_config(env, "[rate.roles.ghost]\ncapacity = 5\nrefill_per_second = 1\n")
    with pytest.raises(ConfigError, match=r"\[rate\.roles\.ghost\]") as caught:
        load_settings(env)
    assert str(path) in str(caught.value)
    assert caught.value.hint is not None


def test_a_default_role_removed_by_custom_roles_is_refused(env: dict[str, str]) -> None:
    write_config(env, CUSTOM_ROLES + "[rate.roles.guest]\ncapacity = 5\nrefill_per_second = 1\n")
    with pytest.raises(ConfigError, match="guest"):
        load_settings(env)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("capacity = 5\n", "`refill_per_second` is missing"),
        ("refill_per_second = 5\n", "`capacity` is missing"),
        ("", "`capacity` is missing"),
        ("capacity = 5\nrefill_per_second = 1\nburst = 3\n", "unknown setting `burst`"),
        ("capacity = 5\nrefill = 1\n", "unknown setting `refill`"),
        ("capacity = 0\nrefill_per_second = 1\n", "capacity"),
        ("capacity = -5\nrefill_per_second = 1\n", "capacity"),
        ("capacity = 0.5\nrefill_per_second = 1\n", "capacity must be at least 1"),
        ("capacity = 2e12\nrefill_per_second = 1\n", "capacity"),
        ("capacity = nan\nrefill_per_second = 1\n", "capacity"),
        ("capacity = inf\nrefill_per_second = 1\n", "capacity"),
        ('capacity = "100"\nrefill_per_second = 1\n', "capacity"),
        ("capacity = true\nrefill_per_second = 1\n", "capacity"),
        ("capacity = 5\nrefill_per_second = -1\n", "refill"),
        ("capacity = 5\nrefill_per_second = nan\n", "refill"),
        ('capacity = 5\nrefill_per_second = "5/s"\n', "refill"),
        ("capacity = 5\nrefill_per_second = [1]\n", "refill"),
    ],
)
def test_a_bad_limit_is_a_config_error_naming_the_role(
    env: dict[str, str], table: str, message: str
) -> None:
    write_config(env, "[rate.roles.user]\n" + table)
    with pytest.raises(ConfigError, match=message) as caught:
        load_settings(env)
    assert "[rate.roles.user]" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[rate]\nroles = 5\n", r"\[rate\.roles\] must hold"),
        ("[rate.roles]\nuser = 5\n", r"\[rate\.roles\.user\] must be a table"),
        ("[rate.roles]\n", "defines no limit"),
    ],
)
def test_a_malformed_rate_roles_table_is_refused(
    env: dict[str, str], text: str, message: str
) -> None:
    write_config(env, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_a_zero_refill_is_a_quota_and_allowed(env: dict[str, str]) -> None:
    write_config(env, "[rate.roles.guest]\ncapacity = 1000\nrefill_per_second = 0\n")
    assert load_settings(env).rate.roles["guest"] == Limit.of(1000, 0)


# --- default_role ------------------------------------------------------------------------------


def test_default_role_from_the_file_and_the_environment(env: dict[str, str]) -> None:
    write_config(env, '[rate]\ndefault_role = "user"\n')
    settings = load_settings(env)
    assert settings.rate.default_role == "user"
    assert settings.rate.limit_for(["nobody"]) == (DEFAULT_LIMITS["user"], "user")
    env["MCPSEC_RATE_DEFAULT_ROLE"] = "premium"
    settings = load_settings(env)
    assert settings.rate.default_role == "premium"
    assert settings.source_of("rate.default_role") == "env MCPSEC_RATE_DEFAULT_ROLE"


def test_a_default_role_without_a_limit_is_refused(env: dict[str, str]) -> None:
    env["MCPSEC_RATE_DEFAULT_ROLE"] = "nobody"
    with pytest.raises(ConfigError, match="nobody"):
        load_settings(env)


def test_a_default_role_whose_limit_was_not_written_is_refused(env: dict[str, str]) -> None:
    write_config(env, "[rate.roles.user]\ncapacity = 5\nrefill_per_second = 1\n")
    env["MCPSEC_RATE_DEFAULT_ROLE"] = "guest"  # guest exists, but has no limit any more
    with pytest.raises(ConfigError, match=r"guest.*\[rate\.roles\.guest\]"):
        load_settings(env)


@pytest.mark.parametrize("value", ['""', "5", "true"])
def test_default_role_in_the_file_must_be_a_name(env: dict[str, str], value: str) -> None:
    write_config(env, f"[rate]\ndefault_role = {value}\n")
    with pytest.raises(ConfigError, match=r"rate\.default_role"):
        load_settings(env)


def test_the_policy_is_shown_by_config_show(env: dict[str, str]) -> None:
    text = "[rate]\nfail_open = false\n[rate.roles.guest]\ncapacity = 7\nrefill_per_second = 0.25\n"
    write_config(env, text)
    shown = redacted(load_settings(env))["rate"]
    assert shown == {
        "fail_open": False,
        "default_role": "guest",
        "roles": {"guest": {"capacity": 7, "refill_per_second": 0.25}},
    }


# --- the policy itself -------------------------------------------------------------------------


def test_the_most_generous_limit_is_by_sustained_rate_then_burst() -> None:
    policy = RatePolicy(
        {
            "burst": Limit.of(10_000, 1),
            "steady": Limit.of(10, 2),
            "twin": Limit.of(20, 2),
        },
        default_role="burst",
    )
    assert policy.limit_for(["burst", "steady"]) == (Limit.of(10, 2), "steady")
    assert policy.limit_for(["steady", "twin", "burst"]) == (Limit.of(20, 2), "twin")
    assert policy.limit_for(["unknown"]) == (Limit.of(10_000, 1), "burst")


def test_limit_of_takes_the_burst_first() -> None:
    limit = Limit.of(5, 1)
    assert (limit.capacity, limit.refill_per_second) == (5, 1)
    assert Limit.of(5, 1) == Limit.of(5.0, 1.0)
    assert Limit.of(5, 1) < Limit.of(1, 2) < Limit.of(3, 2)
