"""`mcpsec jwks`: the public JWK Set that resource servers load to verify tokens."""

from __future__ import annotations

import json as json_module

import typer

from mcpsec.cli.options import JsonFlag
from mcpsec.cli.state import state_of

app = typer.Typer(add_completion=False)


@app.command()
def jwks(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Print the public JWK Set (RFC 7517) of every asymmetric key that is not retired.

    Always JSON (`--json` is accepted for symmetry); never a private key or an HS256 secret.

    Example: mcpsec jwks > /srv/www/.well-known/jwks.json
    """
    del json  # the output is a JSON document either way
    state = state_of(ctx)
    state.output(json=True).line(json_module.dumps(state.keyring().jwks(), indent=2))
