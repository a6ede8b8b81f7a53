import pytest
from mcpsec.core.durations import format_duration, parse_duration
from mcpsec.core.errors import InvalidInputError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("24h", 86400),
        ("7d", 604800),
        ("90d", 7776000),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("250ms", 0.25),
        (" 15M ", 900),
        ("1.5h", 5400),
    ],
)
def test_parse(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "m", "5 m", "-5m", "0s", "1y", "1h-30m", "30m\n5"])
def test_refuses(text):
    with pytest.raises(InvalidInputError):
        parse_duration(text, field="ttl")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (5400, "1h30m"), (90061, "1d1h1m1s"), (604800, "7d")],
)
def test_format(seconds, text):
    assert format_duration(seconds) == text
    if seconds:
        assert parse_duration(text) == seconds
