"""`mcpsec doctor`: check the config, secrets, store and clock; exit 0, 4 or 5."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import JsonFlag
from mcpsec.cli.state import state_of

if TYPE_CHECKING:
    from mcpsec.core.doctor import DoctorReport


app = typer.Typer(
    add_completion=False,
)


@app.command()
def doctor(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Check that config, secrets, store and clock are ready; one line per check.

    On Redis it also checks the production footguns: an eviction policy other than
    noeviction, persistence off, a replica given as the store, a cluster not ok, and the
    commands the ACL user may not run. Exit 0 when nothing failed (warnings allowed), 4 for
    a config or secret problem, 5 when the store is unavailable or unfit.

    Example: mcpsec doctor || echo "fix the line marked fail"
    """
    from mcpsec.core.doctor import Area, diagnose

    state = state_of(ctx)
    out = state.output(json=json)
    report = diagnose(state.environ, config_path=state.config_path, flags=state.flags)
    out.result(report, human=_lines)
    exits = {None: errors.OK, Area.CONFIG: errors.CONFIG, Area.STORE: errors.STORE}
    raise typer.Exit(exits[report.failed_area])


def _lines(report: DoctorReport) -> str:
    width = max(len(c.name) for c in report.checks)
    return "\n".join(f"{c.status.value:<4}  {c.name:<{width}}  {c.detail}" for c in report.checks)
