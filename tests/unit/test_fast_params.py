"""The pydantic-free coercer takes exactly the plain options and converts them as Typer would."""

from pathlib import Path
from typing import Annotated

import pytest
import typer
from mcpsec.cli import fast_params
from typer.testing import CliRunner


def make_app():
    app = typer.Typer()

    @app.command()
    def run(
        count: Annotated[int, typer.Option("--count")] = 1,
        ratio: Annotated[float | None, typer.Option("--ratio")] = None,
        where: Annotated[Path | None, typer.Option("--where")] = None,
        name: Annotated[str, typer.Option("--name")] = "x",
        ranged: Annotated[int, typer.Option("--ranged", min=1, max=3)] = 1,
        flag: Annotated[bool, typer.Option("--flag", envvar="FAST_FLAG")] = False,
    ) -> None:
        print(repr((count, ratio, where, name, ranged, flag)))

    return app


@pytest.fixture(autouse=True)
def installed():
    fast_params.install()


def invoke(*args, env=None):
    return CliRunner().invoke(make_app(), list(args), env=env)


def test_plain_values_are_converted():
    ran = invoke("--count", "7", "--ratio", "0.5", "--where", "/tmp/x", "--name", "n")
    assert ran.exit_code == 0, ran.output
    assert ran.stdout.strip() == repr((7, 0.5, Path("/tmp/x"), "n", 1, False))


def test_bad_plain_value_is_a_usage_error():
    ran = invoke("--count", "seven")
    assert ran.exit_code == 2
    assert "'seven' is not a valid integer" in ran.output


def test_constrained_options_still_go_through_typer():
    ran = invoke("--ranged", "9")
    assert ran.exit_code == 2
    assert "--ranged" in ran.output


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("0", False)])
def test_boolean_from_environment(value, expected):
    ran = invoke(env={"FAST_FLAG": value})
    assert ran.exit_code == 0, ran.output
    assert ran.stdout.strip().endswith(f"{expected})")


def test_install_is_idempotent():
    fast_params.install()
    first = typer.core.build_runtime_param  # type: ignore[attr-defined]
    fast_params.install()
    assert typer.core.build_runtime_param is first  # type: ignore[attr-defined]
