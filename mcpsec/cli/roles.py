"""`mcpsec roles`: the roles in effect and what each one really grants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from mcpsec.cli.options import JsonFlag, QuietFlag
from mcpsec.cli.state import state_of

if TYPE_CHECKING:
    from mcpsec.core.roles import RoleView

app = typer.Typer(
    add_completion=False,
    help="The roles in effect (from config, or the built-in set) and what they grant.",
    no_args_is_help=True,
)


@app.command("list")
def list_roles(ctx: typer.Context, json: JsonFlag = False, quiet: QuietFlag = False) -> None:
    """List every role with what it inherits and its effective permissions.

    Example: mcpsec roles list --json | jq -r '.[].name'
    """
    from mcpsec.core.roles import explain

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    table = state.settings().roles
    views = [explain(table, name) for name in sorted(table.roles)]
    out.listing(
        views,
        ("ROLE", "INHERITS", "EFFECTIVE PERMISSIONS"),
        lambda v: (
            v.name,
            ", ".join(v.inherits) or "-",
            " ".join(g.permission for g in v.effective),
        ),
    )


@app.command()
def show(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(metavar="ROLE", help="The role to explain.")],
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Show a role's effective permissions and the roles each one comes through.

    Example: mcpsec roles show premium
    """
    from mcpsec.core.roles import explain

    state = state_of(ctx)
    view = explain(state.settings().roles, role)
    state.output(json=json, quiet=quiet).result(view, human=_explained)


def _explained(view: RoleView) -> str:
    lines = [f"role: {view.name}", f"inherits: {', '.join(view.inherits) or '-'}"]
    lines.append("effective permissions:")
    for grant in view.effective:
        origin = "direct" if len(grant.via) == 1 else "via " + " -> ".join(grant.via[1:])
        lines.append(f"  {grant.permission:<24} {origin}")
    return "\n".join(lines)
