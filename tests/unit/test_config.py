"""Settings precedence (flag > env > file > default), validation and redaction."""

import json
import tomllib
from pathlib import Path

import pytest
from mcpsec.core.config import load_settings, redacted
from mcpsec.core.config_file import init_config, render_default_config
from mcpsec.core.errors import ConfigError


@pytest.fixture
def env(tmp_path):
    return {
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def write_config(env, text):
    path = tmp_config(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def tmp_config(env):
    from pathlib import Path

    return Path(env["XDG_CONFIG_HOME"]) / "mcpsec" / "config.toml"


def test_defaults(env, tmp_path):
    settings = load_settings(env)
    assert settings.store.url == f"sqlite://{tmp_path}/data/mcpsec/mcpsec.db"
    assert settings.store.prefix == "mcpsec:"
    assert settings.store.timeout == 2.0
    assert settings.source_of("store.url") == "default"
    assert not settings.config_found


def test_each_layer_beats_the_one_below(env):
    path = write_config(env, '[store]\nurl = "redis://file:6379"\nprefix = "f:"\ntimeout = "5s"\n')
    settings = load_settings(env)
    assert (settings.store.url, settings.store.prefix, settings.store.timeout) == (
        "redis://file:6379",
        "f:",
        5.0,
    )
    assert settings.source_of("store.url") == f"file {path}"

    env["MCPSEC_STORE_URL"] = "redis://env:6379"
    settings = load_settings(env)
    assert settings.store.url == "redis://env:6379"
    assert settings.source_of("store.url") == "env MCPSEC_STORE_URL"
    assert settings.store.prefix == "f:"  # the file still supplies what env does not

    settings = load_settings(env, flags={"store.url": "redis://flag:6379"})
    assert settings.store.url == "redis://flag:6379"
    assert settings.source_of("store.url") == "flag"


def test_config_path_from_env_and_flag(env, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('[store]\nprefix = "other:"\n')
    env["MCPSEC_CONFIG"] = str(other)
    assert load_settings(env).store.prefix == "other:"
    flagged = tmp_path / "flagged.toml"
    flagged.write_text('[store]\nprefix = "flag:"\n')
    assert load_settings(env, config_path=flagged).store.prefix == "flag:"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[store\n", "not valid TOML"),
        ('[store]\nurll = "x"\n', "unknown setting `urll`"),
        ('[tokens]\nsecret = "in-the-file"\n', "unknown setting `secret`"),
        ('store = "x"\n', "must be a \\[section\\]"),
        ('[store]\ntimeout = "soon"\n', "store.timeout"),
        ('[store]\nurl = ""\n', "non-empty"),
        ("[store]\nurl = 5\n", "non-empty string"),
    ],
)
def test_bad_files_name_the_problem(env, text, message):
    write_config(env, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_secret_comes_from_env_and_is_redacted(env):
    env["MCPSEC_JWT_SECRET"] = "s" * 40
    env["MCPSEC_STORE_URL"] = "redis://ops:hunter2@db:6379/0"
    settings = load_settings(env)
    assert settings.tokens.secret is not None
    assert settings.tokens.secret.reveal() == b"s" * 40
    shown = json.dumps(redacted(settings))
    assert "s" * 40 not in shown
    assert "hunter2" not in shown
    assert "redis://ops:***@db:6379/0" in shown
    assert "MCPSEC_JWT_SECRET" in shown


def test_relative_secret_file_is_relative_to_the_config(env):
    path = write_config(env, '[tokens]\nsecret_file = "keys/jwt.secret"\n')
    assert load_settings(env).tokens.secret_file == path.parent / "keys" / "jwt.secret"


def test_rendered_default_config_is_valid_and_commented(env, tmp_path):
    text = render_default_config("sqlite:///x/y.db")
    assert text.count("#") > 10
    document = tomllib.loads(text)
    assert document["store"]["url"] == "sqlite:///x/y.db"
    path = write_config(env, text)
    settings = load_settings(env)
    assert settings.store.timeout == 2.0
    assert settings.tokens.secret_file == path.parent / "jwt.secret"


def test_init_creates_config_and_secret_and_refuses_twice(env):
    result = init_config(env)
    assert result.config_path == tmp_config(env)
    assert result.secret_created
    assert oct(result.secret_file.stat().st_mode & 0o777) == "0o600"
    assert oct(result.secret_file.parent.stat().st_mode & 0o777) == "0o700"
    secret = result.secret_file.read_bytes()
    assert len(secret.strip()) >= 32
    with pytest.raises(ConfigError, match="already exists"):
        init_config(env)
    again = init_config(env, force=True)
    assert again.overwritten and not again.secret_created
    assert again.secret_file.read_bytes() == secret  # --force never replaces a secret


def test_init_refuses_a_loose_existing_secret(env):
    secret = tmp_config(env).parent / "jwt.secret"
    secret.parent.mkdir(parents=True)
    secret.write_text("x" * 40)
    secret.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        init_config(env)
    assert not tmp_config(env).exists()  # nothing half-written


def test_every_setting_has_a_description():
    from mcpsec.core.config import ENV_VARS, SETTING_HELP

    assert set(SETTING_HELP) == set(ENV_VARS)


def test_a_named_config_file_must_exist(env, tmp_path):
    missing = tmp_path / "prod.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env, config_path=missing)
    env["MCPSEC_CONFIG"] = str(missing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(env)


def test_a_config_file_that_is_not_utf8_is_a_config_error(env):
    path = tmp_config(env)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'[store]\nprefix = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(env)


@pytest.mark.parametrize("prefix", ["app{x}:", "a{", "two words:", "x" * 65])
def test_prefix_cannot_carry_a_hash_tag_or_spaces(env, prefix):
    env["MCPSEC_STORE_PREFIX"] = prefix
    with pytest.raises(ConfigError, match=r"store\.prefix from env MCPSEC_STORE_PREFIX"):
        load_settings(env)


@pytest.mark.parametrize("timeout", ["11m", "9" * 400 + "s", "1h"])
def test_store_timeout_is_bounded(env, timeout):
    env["MCPSEC_STORE_TIMEOUT"] = timeout
    with pytest.raises(ConfigError, match=r"store\.timeout"):
        load_settings(env)


def test_init_into_a_folder_or_an_impossible_path_writes_nothing(env, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        init_config(env, config_path=folder, force=True)
    assert list(tmp_path.glob("jwt.secret")) == []
    with pytest.raises(ConfigError, match="cannot write"):
        init_config(env, config_path=Path("/dev/null/config.toml"))


def test_token_settings_default_and_from_the_file_and_env(env):
    defaults = load_settings(env).tokens
    assert (defaults.issuer, defaults.audience) == ("mcpsec", None)
    assert (defaults.access_ttl, defaults.refresh_ttl) == (1800.0, 7 * 86400.0)
    assert defaults.algorithms == ("EdDSA", "ES256", "RS256", "HS256")
    assert (defaults.leeway, defaults.reuse_leeway) == (0.0, 2.0)
    write_config(
        env,
        '[tokens]\nissuer = "https://auth.example"\naudience = "https://mcp.example"\n'
        'access_ttl = "5m"\nrefresh_ttl = "1d"\nalgorithms = "eddsa, EdDSA,hs256"\n'
        'leeway = "30s"\nreuse_leeway = "0s"\n',
    )
    env["MCPSEC_JWT_ACCESS_TTL"] = "10m"
    tokens = load_settings(env).tokens
    assert tokens.issuer == "https://auth.example"
    assert tokens.audience == "https://mcp.example"
    assert tokens.access_ttl == 600.0  # the environment beats the file
    assert tokens.refresh_ttl == 86400.0
    assert tokens.algorithms == ("EdDSA", "HS256")  # canonical names, each once
    assert (tokens.leeway, tokens.reuse_leeway) == (30.0, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MCPSEC_JWT_ALGORITHMS", "none", r"tokens\.algorithms.*unknown algorithm 'none'"),
        ("MCPSEC_JWT_ALGORITHMS", " , ", r"tokens\.algorithms"),
        ("MCPSEC_JWT_LEEWAY", "6m", r"tokens\.leeway.*longer than 5m"),
        ("MCPSEC_JWT_REUSE_LEEWAY", "-1s", r"tokens\.reuse_leeway"),
        ("MCPSEC_JWT_ACCESS_TTL", "0s", r"tokens\.access_ttl"),
        ("MCPSEC_JWT_REFRESH_TTL", "soon", r"tokens\.refresh_ttl"),
    ],
)
def test_bad_token_settings_are_config_errors_naming_the_setting(env, name, value, message):
    env[name] = value
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_server_settings_from_the_file_and_env(env):
    write_config(
        env,
        '[tokens]\naudience = "https://mcp.example.com/mcp"\nissuer = "https://auth.example.com"\n'
        '[server.tools]\nwrite_file = "files:write"\nlist_users = "admin:users"\n'
        "[server.tool_costs]\nwrite_file = 5\n",
    )
    server = load_settings(env).server
    assert server.resource == "https://mcp.example.com/mcp"  # tokens.audience
    assert server.authorization_servers == ("https://auth.example.com",)  # tokens.issuer
    assert dict(server.tools) == {"write_file": "files:write", "list_users": "admin:users"}
    assert dict(server.tool_costs) == {"write_file": 5.0}
    env = {
        **env,
        "MCPSEC_SERVER_RESOURCE": "https://other.example.com/mcp",
        "MCPSEC_SERVER_AUTHORIZATION_SERVERS": "https://a.example.com,https://b.example.com",
    }
    server = load_settings(env).server
    assert server.resource == "https://other.example.com/mcp"
    assert server.authorization_servers == ("https://a.example.com", "https://b.example.com")
    assert redacted(load_settings(env))["server"]["tools"]["write_file"] == "files:write"


def test_a_default_permission_for_tools_without_a_rule(env):
    assert load_settings(env).server.default_permission is None
    env = {**env, "MCPSEC_SERVER_DEFAULT_PERMISSION": "tools:call"}
    assert load_settings(env).server.default_permission == "tools:call"
    with pytest.raises(ConfigError, match=r"server\.default_permission"):
        load_settings({**env, "MCPSEC_SERVER_DEFAULT_PERMISSION": "everything"})


def test_without_a_url_issuer_there_is_no_default_authorization_server(env):
    assert load_settings(env).server.authorization_servers == ()
    assert load_settings(env).server.resource is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server.tools]\nwrite_file = "files write"\n', "resource:action"),
        ("[server.tools]\nwrite_file = 3\n", "must be a string"),
        ('[server.tools]\n"bad tool" = "files:write"\n', "bad tool"),
        ("[server.tool_costs]\nwrite_file = 0\n", "more than 0"),
        ('[server.tool_costs]\nwrite_file = "5"\n', "number"),
        ("[server]\ntools = 3\n", "table"),
        ('[server]\nauthorization_servers = "ftp://x"\n', "http"),
        ('[server]\nresource = "has space"\n', "server.resource"),
        ('[server]\nresource = "mcp-server"\n', "absolute URL"),
        ('[server]\nresource = "https://exämple.com/mcp"\n', "ASCII"),
        ('[server]\nunknown = "x"\n', "unknown setting"),
    ],
)
def test_bad_server_settings_are_config_errors(env, text, message):
    write_config(env, text)
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_the_default_config_shows_the_server_settings_commented_out(env):
    text = render_default_config("sqlite:///x.db")
    assert "# [server.tools]" in text and '# write_file = "files:write"' in text
    assert "server" not in tomllib.loads(text)
