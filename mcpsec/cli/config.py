"""`mcpsec config`: write, show and locate the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mcpsec.cli.options import JsonFlag, QuietFlag
from mcpsec.cli.state import state_of

if TYPE_CHECKING:
    from mcpsec.core.config_file import InitResult

app = typer.Typer(
    add_completion=False, help="Write, show and locate the configuration.", no_args_is_help=True
)


@dataclass(frozen=True)
class ConfigLocation:
    config_path: Path = field(metadata={"essential": True})
    exists: bool


@app.command()
def init(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing config file (secrets are kept).")
    ] = False,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Write a commented default config and create the JWT secret file it names (0600).

    Example: mcpsec config init && mcpsec doctor
    """
    from mcpsec.core.audit import Outcome
    from mcpsec.core.config_file import init_config

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    done = init_config(state.environ, config_path=state.config_path, force=force)
    out.result(done, human=_told)
    # Recorded after the fact (there was no config to find the store by before); a failure
    # is reported at exit like every audit failure, and the config stays written.
    state.audit_log().verdict(
        "config.initialized",
        Outcome.ALLOWED,
        details={"path": str(done.config_path), "overwritten": done.overwritten},
    )


@app.command()
def show(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Show the settings in effect and where each one came from; secrets are redacted.

    Example: mcpsec --store redis://localhost:6379/0 config show --json
    """
    from mcpsec.core.config import redacted

    state = state_of(ctx)
    out = state.output(json=json)
    out.result(redacted(state.settings()), human=_settings_lines)


@app.command()
def path(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Print the config file mcpsec reads (it may not exist yet).

    Example: $EDITOR "$(mcpsec config path)"
    """
    from mcpsec.core.config import resolve_config_path

    state = state_of(ctx)
    location = resolve_config_path(state.environ, state.config_path)
    out = state.output(json=json)
    out.result(ConfigLocation(location, location.is_file()), human=lambda c: str(c.config_path))


def _told(result: InitResult) -> str:
    verb = "replaced" if result.overwritten else "wrote"
    secret = "created" if result.secret_created else "kept existing"
    return (
        f"{verb} {result.config_path}\n"
        f"{secret} JWT secret file {result.secret_file} (mode 0600)\n"
        "next: mcpsec doctor"
    )


def _settings_lines(document: dict[str, Any]) -> str:
    sources = document["sources"]
    found = "" if document["config_found"] else " (not found; defaults apply)"
    lines = [f"config file: {document['config_path']}{found}"]
    lines.append(f"roles = {', '.join(document['roles'])}")
    for section in ("store", "tokens", "keys", "audit", "rate"):
        for key, value in document[section].items():
            name = f"{section}.{key}"
            if name == "rate.roles":
                limits = ", ".join(
                    f"{role} {v['capacity']:g}/{v['refill_per_second']:g}"
                    for role, v in value.items()
                )
                lines.append(f"rate.roles = {limits}  [{sources.get(name, 'default')}]")
                continue
            shown = "-" if value is None else value
            lines.append(f"{name} = {shown}  [{sources.get(name, 'default')}]")
    return "\n".join(lines)
