"""RFC 9728 protected resource metadata: the document, where it lives, the 401 challenge."""

from __future__ import annotations

import pytest
from mcpsec.core.errors import InvalidInputError
from mcpsec.core.prm import metadata_url, protected_resource


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp",
        ),
        ("https://mcp.example.com", "https://mcp.example.com/.well-known/oauth-protected-resource"),
        (
            "https://mcp.example.com/",
            "https://mcp.example.com/.well-known/oauth-protected-resource",
        ),
        ("https://h:8443/a/b/", "https://h:8443/.well-known/oauth-protected-resource/a/b"),
    ],
)
def test_the_well_known_path_goes_between_host_and_path(resource: str, expected: str) -> None:
    assert metadata_url(resource) == expected


def test_the_document_and_the_challenge_name_the_same_place() -> None:
    found = protected_resource(
        "https://mcp.example.com/mcp",
        ["https://auth.example.com", "https://auth.example.com"],
        ["files:read", "files:write", "files:read"],
        name="Files",
    )
    assert found.document == {
        "resource": "https://mcp.example.com/mcp",
        "authorization_servers": ["https://auth.example.com", "https://auth.example.com"],
        "scopes_supported": ["files:read", "files:write"],
        "bearer_methods_supported": ["header"],
        "resource_name": "Files",
    }
    assert found.www_authenticate == (
        'Bearer resource_metadata="https://mcp.example.com/.well-known/'
        'oauth-protected-resource/mcp", scope="files:read files:write"'
    )
    assert found.warnings == ()


@pytest.mark.parametrize(
    ("resource", "servers", "scopes", "words"),
    [
        ("", ["https://a"], [], "resource URI"),
        ("mcp.example.com/mcp", ["https://a"], [], "absolute URL"),
        ("http://mcp.example.com/mcp", ["https://a"], [], "https"),
        ("https://mcp.example.com/mcp#x", ["https://a"], [], "fragment"),
        ('https://mcp.example.com/m"cp', ["https://a"], [], "quotes"),
        ("https://mcp.example.com/mcp", [], [], "authorization server"),
        ("https://mcp.example.com/mcp", ["ftp://a"], [], "absolute URL"),
        ("https://mcp.example.com/mcp", ["https://a"], ["two words"], "one word"),
        ("https://mcp.example.com/mcp", ["https://a"], ['a"b'], "quotes"),
        ("https://mcp.exämple.com/mcp", ["https://a"], [], "ASCII"),
    ],
)
def test_what_a_client_could_not_use_is_refused(
    resource: str, servers: list[str], scopes: list[str], words: str
) -> None:
    with pytest.raises(InvalidInputError, match=words):
        protected_resource(resource, servers, scopes)


def test_plain_http_on_loopback_is_allowed_with_a_warning() -> None:
    found = protected_resource("http://127.0.0.1:8000/mcp", ["http://localhost:9000"])
    assert found.metadata_url == "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
    assert found.warnings and "http" in found.warnings[0]


def test_what_is_not_given_comes_from_the_server_settings() -> None:
    from mcpsec.core.config import ServerSettings
    from mcpsec.core.prm import for_server

    server = ServerSettings(
        "https://mcp.example.com/mcp",
        ("https://auth.example.com",),
        {"write_file": "files:write", "read_file": "files:read", "cat": "files:read"},
    )
    found = for_server(server)
    assert found.document["resource"] == "https://mcp.example.com/mcp"
    assert found.document["authorization_servers"] == ["https://auth.example.com"]
    assert found.document["scopes_supported"] == ["files:read", "files:write"]
    given = for_server(server, resource="https://x.example.com/m", scopes=["a:b"])
    assert (given.document["resource"], given.document["scopes_supported"]) == (
        "https://x.example.com/m",
        ["a:b"],
    )
