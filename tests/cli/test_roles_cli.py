"""`mcpsec roles` and how config roles reach `keys`."""

import json


def write_roles(home, text):
    path = home / "cfg" / "mcpsec" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_list_and_show_the_defaults(mcpsec):
    listed = json.loads(mcpsec("roles", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["admin", "guest", "premium", "user"]
    shown = mcpsec("roles", "show", "premium")
    assert shown.exit_code == 0
    assert "weather:read             via user -> guest" in shown.stdout
    doc = json.loads(mcpsec("roles", "show", "--json", "user").stdout)
    assert {g["permission"]: g["via"] for g in doc["effective"]} == {
        "files:read": ["user"],
        "weather:read": ["user", "guest"],
    }
    assert mcpsec("roles", "list", "-q").stdout.split() == ["admin", "guest", "premium", "user"]


def test_unknown_role_is_exit_3(mcpsec):
    ran = mcpsec("roles", "show", "wizard")
    assert ran.exit_code == 3 and "no role named 'wizard'" in ran.stderr


def test_a_cycle_in_config_is_exit_4_naming_the_roles(mcpsec, home):
    write_roles(home, '[roles.a]\ninherits = ["b"]\n[roles.b]\ninherits = ["a"]\n')
    for args in (["roles", "list"], ["keys", "list"], ["doctor"]):
        ran = mcpsec(*args)
        assert ran.exit_code == 4
        assert "a -> b -> a" in ran.stdout + ran.stderr


def test_keys_use_the_configured_roles(mcpsec, home):
    write_roles(home, '[roles.deployer]\npermissions = ["deploy:*"]\n')
    assert mcpsec("keys", "create", "--name", "x", "--role", "user").exit_code == 2
    key = mcpsec("keys", "create", "--name", "x", "--role", "deployer", "-q").stdout.strip()
    assert mcpsec("keys", "verify", "--permission", "deploy:prod", key).exit_code == 0
    assert mcpsec("keys", "verify", "--permission", "files:read", key).exit_code == 1


def test_config_init_writes_the_default_roles(mcpsec, home):
    assert mcpsec("config", "init").exit_code == 0
    text = (home / "cfg" / "mcpsec" / "config.toml").read_text()
    assert "[roles.premium]" in text
    listed = json.loads(mcpsec("roles", "list", "--json").stdout)
    assert [r["name"] for r in listed] == ["admin", "guest", "premium", "user"]
