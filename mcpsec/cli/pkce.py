"""`mcpsec pkce`: PKCE (RFC 7636) code verifiers and challenges for OAuth clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import typer

from mcpsec.cli import errors
from mcpsec.cli.options import JsonFlag, QuietFlag, read_value
from mcpsec.cli.state import state_of
from mcpsec.core import pkce

app = typer.Typer(
    add_completion=False,
    help="PKCE (RFC 7636) code verifiers and challenges for OAuth clients.",
    no_args_is_help=True,
)

MethodOption = Annotated[
    str,
    typer.Option(
        "--method",
        metavar="S256|plain",
        help="Challenge method. plain exists only for clients that cannot hash; avoid it.",
    ),
]


@dataclass(frozen=True)
class Challenge:
    code_challenge: str = field(metadata={"essential": True})
    code_challenge_method: pkce.Method


@dataclass(frozen=True)
class Verdict:
    match: bool = field(metadata={"essential": True})
    code_challenge_method: pkce.Method


@app.command()
def generate(
    ctx: typer.Context,
    length: Annotated[
        int,
        typer.Option("--length", metavar="LENGTH", help="Verifier length, 43 to 128 characters."),
    ] = pkce.DEFAULT_LENGTH,
    method: MethodOption = "S256",
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Generate a fresh code verifier and its challenge.

    Example: mcpsec pkce generate --json | jq -r .code_challenge
    """
    out = state_of(ctx).output(json=json, quiet=quiet)
    chosen = pkce.parse_method(method)
    if chosen.warning:
        out.warn(chosen.warning)
    out.result(pkce.generate(length, chosen))


@app.command()
def challenge(
    ctx: typer.Context,
    verifier: Annotated[
        str | None,
        typer.Argument(metavar="VERIFIER|-", help="The code verifier; `-` reads stdin."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Print the S256 challenge of a code verifier.

    Example: echo "$VERIFIER" | mcpsec pkce challenge -
    """
    out = state_of(ctx).output(json=json, quiet=quiet)
    value = pkce.challenge_of(read_value(verifier, "code verifier"))
    out.result(Challenge(value, pkce.Method.S256), human=lambda c: c.code_challenge)


@app.command()
def verify(
    ctx: typer.Context,
    verifier: Annotated[
        str,
        typer.Option(
            "--verifier", metavar="VERIFIER|-", help="The code verifier; `-` reads stdin."
        ),
    ],
    challenge: Annotated[
        str,
        typer.Option("--challenge", metavar="CHALLENGE", help="The challenge to check it against."),
    ],
    method: MethodOption = "S256",
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Check that a verifier matches a challenge: exit 0 on a match, 1 on a mismatch.

    Example: mcpsec pkce verify --verifier - --challenge "$CHALLENGE" < verifier.txt
    """
    out = state_of(ctx).output(json=json, quiet=quiet)
    chosen = pkce.parse_method(method)
    if chosen.warning:
        out.warn(chosen.warning)
    matched = pkce.verify(read_value(verifier, "code verifier"), challenge, chosen)
    out.result(Verdict(matched, chosen), human=lambda v: "match" if v.match else "no match")
    if not matched:
        raise typer.Exit(errors.NEGATIVE)
