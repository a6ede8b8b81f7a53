"""How doctor's ACL probe reads a refusal: by what Redis says was refused, in 7.0's and
7.2's wording, whatever the user is called."""

import pytest
from mcpsec.store.redis_facts import _refused


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("this user has no permissions to run the 'xadd' command or its subcommand", "command"),
        ("User apikeys has no permissions to run the 'xadd' command", "command"),  # 7.2
        ("User monkey has no permissions to run the 'evalsha' command", "command"),
        ("this user has no permissions to access one of the keys used as arguments", "key"),
        ("User svc has no permissions to access the 'mcpsec:x' key", "key"),  # DRYRUN, 7.2
        ("No permissions to access a key", "key"),
    ],
)
def test_a_refusal_is_told_by_what_was_refused(message, kind):
    assert _refused(message) == kind
