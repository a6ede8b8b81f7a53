"""`mcpsec prm generate`: defaults from the config, one clear line for a bad resource."""

from __future__ import annotations

import json
from typing import Any


def test_prm_generate_takes_its_defaults_from_the_config(mcpsec: Any) -> None:
    env = {
        "MCPSEC_SERVER_RESOURCE": "https://mcp.example.com/mcp",
        "MCPSEC_SERVER_AUTHORIZATION_SERVERS": "https://auth.example.com, https://b.example.com",
    }
    ran = mcpsec("prm", "generate", "--json", env=env)
    assert ran.exit_code == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["document"]["resource"] == "https://mcp.example.com/mcp"
    assert found["document"]["authorization_servers"] == [
        "https://auth.example.com",
        "https://b.example.com",
    ]
    quiet = mcpsec("prm", "generate", "--quiet", env=env)
    assert quiet.stdout.strip() == found["www_authenticate"]


def test_prm_generate_refuses_a_bad_resource_in_one_line(mcpsec: Any) -> None:
    ran = mcpsec(
        "prm",
        "generate",
        "--resource",
        "http://example.com/mcp",
        "--authorization-server",
        "https://a",
    )
    assert ran.exit_code == 2
    assert ran.stderr.strip().count("\n") == 0 and "https" in ran.stderr
