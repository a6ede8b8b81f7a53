"""`mcpsec config` and `mcpsec doctor` as an operator uses them."""

import json
import stat


def test_init_then_show_then_path(mcpsec, home):
    ran = mcpsec("config", "init")
    assert ran.exit_code == 0, ran.stderr
    config = home / "cfg" / "mcpsec" / "config.toml"
    secret = config.parent / "jwt.secret"
    assert f"wrote {config}" in ran.stdout
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700

    shown = json.loads(mcpsec("config", "show", "--json").stdout)
    assert shown["config_found"] is True
    assert shown["store"]["url"] == f"sqlite://{home}/data/mcpsec/mcpsec.db"
    assert shown["tokens"]["secret_file"] == str(secret)
    assert secret.read_text().strip() not in json.dumps(shown)

    assert mcpsec("config", "path").stdout.strip() == str(config)
    assert json.loads(mcpsec("config", "path", "--json").stdout) == {
        "config_path": str(config),
        "exists": True,
    }


def test_init_refuses_to_overwrite_then_force_keeps_the_secret(mcpsec, home):
    assert mcpsec("config", "init").exit_code == 0
    secret = home / "cfg" / "mcpsec" / "jwt.secret"
    before = secret.read_bytes()
    again = mcpsec("config", "init")
    assert again.exit_code == 4
    assert "already exists" in again.stderr and "--force" in again.stderr
    forced = mcpsec("config", "init", "--force")
    assert forced.exit_code == 0
    assert "replaced" in forced.stdout and "kept existing" in forced.stdout
    assert secret.read_bytes() == before


def test_show_redacts_env_secret_and_password(mcpsec):
    env = {"MCPSEC_JWT_SECRET": "x" * 48, "MCPSEC_STORE_URL": "redis://u:hunter2@db:6379/0"}
    ran = mcpsec("config", "show", env=env)
    assert ran.exit_code == 0
    assert "x" * 48 not in ran.stdout and "hunter2" not in ran.stdout
    assert "store.url = redis://u:***@db:6379/0  [env MCPSEC_STORE_URL]" in ran.stdout
    assert "tokens.secret = <set by env MCPSEC_JWT_SECRET>" in ran.stdout


def test_store_flag_beats_env(mcpsec):
    env = {"MCPSEC_STORE_URL": "redis://env:6379/0"}
    shown = json.loads(
        mcpsec("--store", "redis://flag:6379/0", "config", "show", "--json", env=env).stdout
    )
    assert shown["store"]["url"] == "redis://flag:6379/0"
    assert shown["sources"]["store.url"] == "flag"


def test_config_flag_points_elsewhere(mcpsec, home):
    other = home / "elsewhere.toml"
    assert mcpsec("--config", str(other), "config", "init").exit_code == 0
    assert other.is_file()
    assert mcpsec("--config", str(other), "config", "path").stdout.strip() == str(other)


def test_broken_config_is_exit_4_with_the_file_named(mcpsec, home):
    bad = home / "bad.toml"
    bad.write_text("[store]\nurll = 1\n")
    ran = mcpsec("--config", str(bad), "config", "show")
    assert ran.exit_code == 4
    assert (
        ran.stderr.strip() == f"mcpsec: error: config file {bad}: unknown setting `urll` in [store]"
    )


def test_doctor_healthy_after_init(mcpsec):
    mcpsec("config", "init")
    ran = mcpsec("doctor")
    assert ran.exit_code == 0, ran.stdout
    lines = ran.stdout.strip().splitlines()
    assert [line.split()[1] for line in lines] == ["config", "jwt", "signing", "store", "clock"]
    assert all(line.startswith("ok") for line in lines)
    doc = json.loads(mcpsec("doctor", "--json").stdout)
    assert {c["name"]: c["status"] for c in doc["checks"]}["store"] == "ok"


def test_doctor_exit_4_on_a_loose_secret(mcpsec, home):
    mcpsec("config", "init")
    (home / "cfg" / "mcpsec" / "jwt.secret").chmod(0o644)
    ran = mcpsec("doctor")
    assert ran.exit_code == 4
    assert any(line.startswith("fail") and "chmod 600" in line for line in ran.stdout.splitlines())


def test_doctor_exit_5_when_the_store_is_down(mcpsec):
    ran = mcpsec("--store", "redis://:hunter2@127.0.0.1:1/0", "doctor", "--json")
    assert ran.exit_code == 5
    store = {c["name"]: c for c in json.loads(ran.stdout)["checks"]}["store"]
    assert store["status"] == "fail" and store["area"] == "store"
    assert "hunter2" not in ran.stdout + ran.stderr


def test_verbose_adds_the_cause(mcpsec, home):
    bad = home / "bad.toml"
    bad.write_text("[store\n")
    quiet = mcpsec("--config", str(bad), "config", "show")
    assert quiet.exit_code == 4 and quiet.stderr.count("\n") == 1
    verbose = mcpsec("--verbose", "--config", str(bad), "config", "show")
    assert verbose.exit_code == 4
    assert "caused by TOMLDecodeError" in verbose.stderr
