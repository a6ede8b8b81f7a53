"""Roles from config: inheritance, wildcards, replacing the defaults, and the errors."""

import pytest
from mcpsec.core.config import load_settings
from mcpsec.core.errors import ConfigError, NotFoundError
from mcpsec.core.rbac import allows
from mcpsec.core.roles import DEFAULT_ROLES, build_roles, explain, parse_role_tables


def table(**roles):
    return build_roles(parse_role_tables(roles, "test"))


def test_defaults_are_the_seed_set():
    assert DEFAULT_ROLES.roles == {
        "guest": {"weather:read"},
        "user": {"weather:read", "files:read"},
        "premium": {"weather:read", "weather:write", "files:read", "files:write"},
        "admin": {"*"},
    }


def test_inheritance_is_transitive_and_explained():
    roles = table(
        base={"permissions": ["a:read"]},
        middle={"permissions": ["b:*"], "inherits": ["base"]},
        top={"permissions": ["c:write"], "inherits": ["middle"]},
    )
    assert roles.roles["top"] == {"a:read", "b:*", "c:write"}
    assert allows(roles.effective(["top"]), "b:delete")
    view = explain(roles, "top")
    via = {g.permission: g.via for g in view.effective}
    assert via == {
        "a:read": ("top", "middle", "base"),
        "b:*": ("top", "middle"),
        "c:write": ("top",),
    }


def test_diamond_inheritance_reports_one_path():
    roles = table(
        root={"permissions": ["x:read"]},
        left={"inherits": ["root"]},
        right={"inherits": ["root"]},
        both={"inherits": ["left", "right"]},
    )
    assert [g.permission for g in explain(roles, "both").effective] == ["x:read"]


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ({"a": {"inherits": ["a"]}}, "circle: a -> a"),
        (
            {"a": {"inherits": ["b"]}, "b": {"inherits": ["c"]}, "c": {"inherits": ["a"]}},
            "circle: a -> b -> c -> a",
        ),
        ({"a": {"inherits": ["ghost"]}}, "role 'a' inherits unknown role 'ghost'"),
        ({"a": {"permissions": ["files"]}}, "role 'a': permission 'files'"),
        ({"a": {"permissions": "files:read"}}, "list of strings"),
        ({"a": {"perms": ["files:read"]}}, "unknown setting `perms`"),
        ({"Admin": {"permissions": []}}, "lowercase"),
        ({"a": ["files:read"]}, "must be a [roles.a] table"),
    ],
)
def test_bad_definitions_name_the_role(roles, message):
    with pytest.raises(ConfigError) as caught:
        table(**roles)
    assert message in str(caught.value)


def test_unknown_role_is_not_found():
    with pytest.raises(NotFoundError, match="no role named 'ghost'"):
        explain(DEFAULT_ROLES, "ghost")


def test_config_roles_replace_the_defaults(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[roles.reader]\npermissions = ["files:read"]\n')
    settings = load_settings({"HOME": str(tmp_path)}, config_path=path)
    assert set(settings.roles.roles) == {"reader"}
    path.write_text('[roles.a]\ninherits = ["b"]\n[roles.b]\ninherits = ["a"]\n')
    with pytest.raises(ConfigError, match=f"config file {path}: roles inherit in a circle"):
        load_settings({"HOME": str(tmp_path)}, config_path=path)


def test_deep_and_wide_hierarchies_resolve_in_proportion_to_their_size():
    """A 1500-role chain (deeper than Python's recursion limit), and a 60-tier ladder where
    every tier inherits all lower ones (exponential if paths were walked one by one)."""
    chain = {
        f"r{i}": {"permissions": [f"p{i}:read"], "inherits": [f"r{i - 1}"] if i else []}
        for i in range(1500)
    }
    roles = table(**chain)
    assert len(roles.roles["r1499"]) == 1500
    assert explain(roles, "r1499").effective[0].via[0] == "r1499"
    ladder = {
        f"t{i}": {"permissions": [f"x{i}:read"], "inherits": [f"t{j}" for j in range(i)]}
        for i in range(60)
    }
    wide = table(**ladder)
    assert len(wide.roles["t59"]) == 60
    assert {g.permission: len(g.via) for g in explain(wide, "t59").effective}["x0:read"] == 2


def test_an_empty_roles_table_is_a_config_error():
    with pytest.raises(ConfigError, match="defines no role"):
        table()
