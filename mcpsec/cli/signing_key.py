"""`mcpsec signing-key`: the keys that sign access and refresh tokens."""

from __future__ import annotations

from typing import Annotated

import typer

from mcpsec.cli.options import JsonFlag, QuietFlag
from mcpsec.cli.state import state_of

app = typer.Typer(
    add_completion=False,
    help="Create, list, rotate and retire the keys that sign tokens.",
    no_args_is_help=True,
)

AlgOption = Annotated[
    str, typer.Option("--alg", metavar="EdDSA|ES256|RS256|HS256", help="Signature algorithm.")
]


@app.command()
def generate(
    ctx: typer.Context,
    alg: AlgOption = "EdDSA",
    secret_stdin: Annotated[
        bool,
        typer.Option(
            "--secret-stdin", help="HS256 only: import the secret (32+ bytes) from stdin."
        ),
    ] = False,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Create a key (file 0600); the first key in the keyring becomes the signer.

    Example: mcpsec signing-key generate --alg EdDSA
    """
    import sys

    from mcpsec.core.secret_files import read_secret_stream
    from mcpsec.core.signing_keys import KeyListing, parse_algorithm

    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    secret = read_secret_stream(sys.stdin) if secret_stdin else None
    out.result(KeyListing.of(state.keyring().generate(parse_algorithm(alg), secret=secret)))


@app.command("list")
def list_keys(ctx: typer.Context, json: JsonFlag = False, quiet: QuietFlag = False) -> None:
    """List the keys: kid, algorithm, and whether it signs, only verifies, or is retired.

    Example: mcpsec signing-key list
    """
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    keys = state.keyring().listing()
    out.listing(
        keys,
        ("KID", "ALG", "STATUS", "CREATED"),
        lambda k: (k.kid, k.alg.value, k.status, k.created_at.strftime("%Y-%m-%d %H:%M")),
    )


@app.command()
def rotate(
    ctx: typer.Context,
    alg: Annotated[
        str | None,
        typer.Option("--alg", metavar="EdDSA|ES256|RS256|HS256", help="Default: the signer's."),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="KID", help="Promote this existing key instead."),
    ] = None,
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Make a new key (or, with --to, an existing one) the signer; older keys keep verifying
    the tokens they signed until retired. For caches of the JWKS: generate, publish, wait,
    then `rotate --to KID`.

    Example: mcpsec signing-key rotate && mcpsec jwks > /srv/www/.well-known/jwks.json
    """
    from mcpsec.core.errors import InvalidInputError
    from mcpsec.core.signing_keys import KeyListing, parse_algorithm

    if to is not None and alg is not None:
        raise InvalidInputError("give --alg (for a new key) or --to (an existing one), not both")
    state = state_of(ctx)
    out = state.output(json=json, quiet=quiet)
    ring = state.keyring()
    key = ring.promote(to) if to else ring.rotate(parse_algorithm(alg) if alg else None)
    out.result(KeyListing.of(key))


@app.command()
def retire(
    ctx: typer.Context,
    kid: Annotated[str, typer.Argument(metavar="KID", help="The key to stop trusting.")],
    json: JsonFlag = False,
    quiet: QuietFlag = False,
) -> None:
    """Stop trusting a key that no longer signs: tokens it signed stop verifying.

    Example: mcpsec signing-key retire 3Jq…
    """
    from mcpsec.core.signing_keys import KeyListing

    state = state_of(ctx)
    state.output(json=json, quiet=quiet).result(KeyListing.of(state.keyring().retire(kid)))
