"""The man page's ENVIRONMENT and FILES rows, read from mcpsec's own config definitions.

    for var, description in environment_rows(): ...   # MCPSEC_CONFIG, MCPSEC_STORE_URL, ...

Paths keep `$XDG_CONFIG_HOME` and `$XDG_DATA_HOME` unexpanded, so the page names no home folder.
"""

from __future__ import annotations

from pathlib import Path


def environment_rows() -> list[tuple[str, str]]:
    """Every variable mcpsec reads, with what it does, in the order the page lists them."""
    from mcpsec.core import config

    config_file = _config_file()
    rows = [
        (
            config.CONFIG_ENV,
            f"The config file to read instead of `{config_file}`. `--config` overrides it.",
        ),
    ]
    rows += [(var, _setting_text(setting)) for setting, var in config.ENV_VARS.items()]
    return [
        *rows,
        ("NO_COLOR", "When set to any non-empty value: no colours or tables, as `--no-color`."),
        ("XDG_CONFIG_HOME", f"Where the config file lives: `{config_file}` (default `~/.config`)."),
        (
            "XDG_DATA_HOME",
            f"Where the default SQLite store lives: `{_data_file()}` (default `~/.local/share`).",
        ),
    ]


def _setting_text(setting: str) -> str:
    from mcpsec.core import config
    from mcpsec.core.secret_files import MIN_SECRET_BYTES
    from mcpsec.store.url import SUPPORTED

    text = config.SETTING_HELP[setting].format(
        supported=SUPPORTED, data_file=_data_file(), min_secret=MIN_SECRET_BYTES
    )
    section, _, key = setting.partition(".")
    where = "" if setting in config.FILE_ONLY_FORBIDDEN else f" (`{key}` in `[{section}]`)"
    text += f" Setting: `{setting}`{where}."
    if setting in config.SECRET_SETTINGS:
        text += " A secret: `mcpsec config show` prints where it comes from, not its value."
    return text


def file_rows() -> list[tuple[str, str]]:
    """Every file mcpsec reads or writes by default, with what it holds."""
    from mcpsec.core.config_file import SECRET_FILE_NAME

    secret = str(Path(_config_file()).parent / SECRET_FILE_NAME)
    return [
        (
            _config_file(),
            "The config file (TOML), written by `mcpsec config init`; `$MCPSEC_CONFIG` or "
            "`--config` name another one. Without `$XDG_CONFIG_HOME`: "
            "`~/.config/mcpsec/config.toml`.",
        ),
        (
            secret,
            "The HS256 signing secret, next to the config file, mode 0600. Created by "
            "`mcpsec config init` and never replaced by it; refused when others can read it.",
        ),
        (
            _data_file(),
            "The default store: an SQLite database (mode 0600, folder 0700) in WAL mode, with "
            "its `-wal` and `-shm` files beside it. Without `$XDG_DATA_HOME`: "
            "`~/.local/share/mcpsec/mcpsec.db`.",
        ),
    ]


def _config_file() -> str:
    from mcpsec.core import config

    return str(config.default_config_path({"XDG_CONFIG_HOME": "$XDG_CONFIG_HOME"}))


def _data_file() -> str:
    from mcpsec.core import config

    # default_store_url() makes the path absolute; the man page keeps the variable.
    return str(config.data_home({"XDG_DATA_HOME": "$XDG_DATA_HOME"}) / "mcpsec.db")
