"""Records: put/get/delete, expiry, validation, and what every backend says about itself."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest
from mcpsec.core.errors import InvalidInputError, StoreError
from mcpsec.store.interface import KEEP_TTL, Record, Store, StoreInfo, UpdateStatus

if TYPE_CHECKING:
    from .conftest import StoreTarget

KIND = "thing"
EXPIRY_SLACK = 1.0

ALL_TYPES: dict[str, Any] = {
    "text": "plain",
    "unicode": "héllo wörld ✓ 🔐 日本語",
    "tricky": 'quote " backslash \\ newline \n tab \t',
    "null_text": "null",
    "empty_text": "",
    "zero": 0,
    "int": 42,
    "negative": -7,
    "big": 2**53 + 1,
    "float": 1.5,
    "tenth": 0.1,
    "tiny": -2.25e-10,
    "true": True,
    "false": False,
    "none": None,
    "list": [1, "two", 3.0, None, True, [], {}],
    "empty_list": [],
    "empty_dict": {},
    "nested": {"a": {"b": [1, {"c": "d"}]}, "e": None, "ü": "ß"},
}


def test_round_trip_of_every_json_type(store: Store) -> None:
    assert store.put(KIND, "r1", ALL_TYPES) is True
    record = store.get(KIND, "r1")
    assert record is not None
    assert record.kind == KIND
    assert record.id == "r1"
    assert dict(record.fields) == ALL_TYPES
    for name, value in ALL_TYPES.items():
        assert type(record.fields[name]) is type(value), name


def test_round_trip_of_an_empty_record(store: Store) -> None:
    assert store.put(KIND, "empty", {}) is True
    record = store.get(KIND, "empty")
    assert record is not None
    assert dict(record.fields) == {}


def test_ids_may_hold_punctuation_and_unicode(store: Store) -> None:
    ids = ["a:b", "key_01.x-y", "ünï/cødé", "@#$%^&*()", "x" * 200]
    for n, id_ in enumerate(ids):
        store.put(KIND, id_, {"n": n})
    for n, id_ in enumerate(ids):
        record = store.get(KIND, id_)
        assert record is not None, id_
        assert record.id == id_
        assert dict(record.fields) == {"n": n}


def test_put_replaces_the_whole_record(store: Store) -> None:
    store.put(KIND, "r1", {"old": 1, "kept": "before"})
    assert store.put(KIND, "r1", {"kept": "after", "new": [1]}) is True
    record = store.get(KIND, "r1")
    assert record is not None
    assert dict(record.fields) == {"kept": "after", "new": [1]}


def test_put_replaces_the_expiry_too(store: Store) -> None:
    store.put(KIND, "r1", {"v": 1}, ttl=60)
    store.put(KIND, "r1", {"v": 2})
    record = store.get(KIND, "r1")
    assert record is not None
    assert record.expires_at is None


def test_only_if_absent_leaves_an_existing_record(store: Store) -> None:
    assert store.put(KIND, "r1", {"v": "first"}, ttl=60, only_if_absent=True) is True
    before = store.get(KIND, "r1")
    assert store.put(KIND, "r1", {"v": "second"}, only_if_absent=True) is False
    after = store.get(KIND, "r1")
    assert after is not None
    assert before is not None
    assert dict(after.fields) == {"v": "first"}
    assert after.expires_at == pytest.approx(before.expires_at, abs=0.01)


def test_only_if_absent_writes_after_delete(store: Store) -> None:
    store.put(KIND, "r1", {"v": 1})
    store.delete(KIND, "r1")
    assert store.put(KIND, "r1", {"v": 2}, only_if_absent=True) is True
    record = store.get(KIND, "r1")
    assert record is not None
    assert dict(record.fields) == {"v": 2}


def test_kinds_are_separate_namespaces(store: Store) -> None:
    store.put("thing", "same", {"kind": "thing"})
    store.put("thing_x", "same", {"kind": "thing_x"})
    a, b = store.get("thing", "same"), store.get("thing_x", "same")
    assert a is not None
    assert b is not None
    assert dict(a.fields) == {"kind": "thing"}
    assert dict(b.fields) == {"kind": "thing_x"}
    assert store.delete("thing", "same") is True
    assert store.get("thing_x", "same") is not None


def test_delete_returns_true_then_false(store: Store) -> None:
    store.put(KIND, "r1", {"v": 1})
    assert store.delete(KIND, "r1") is True
    assert store.get(KIND, "r1") is None
    assert store.delete(KIND, "r1") is False
    assert store.delete(KIND, "never") is False


def test_get_of_a_missing_record_is_none(store: Store) -> None:
    assert store.get(KIND, "missing") is None
    assert store.get("other_kind", "missing") is None


# --- expiry ---------------------------------------------------------------------------------


def test_a_record_expires_after_its_ttl(store: Store) -> None:
    store.put(KIND, "short", {"v": 1}, ttl=0.5)
    store.put(KIND, "long", {"v": 2}, ttl=60)
    store.put(KIND, "forever", {"v": 3})
    now = store.now()
    record = store.get(KIND, "short")
    assert record is not None
    assert record.expires_at is not None
    assert record.expires_at == pytest.approx(now + 0.5, abs=EXPIRY_SLACK)
    assert {r.id for r in store.list(KIND).records} == {"short", "long", "forever"}

    time.sleep(1.2)

    assert store.get(KIND, "short") is None
    assert {r.id for r in store.list(KIND).records} == {"long", "forever"}
    assert store.delete(KIND, "short") is False
    result = store.update(KIND, "short", set={"v": 9})
    assert result.status is UpdateStatus.MISSING
    assert result.record is None
    assert store.get(KIND, "short") is None, "update must not resurrect an expired record"
    assert store.put(KIND, "short", {"v": 4}, only_if_absent=True) is True
    again = store.get(KIND, "short")
    assert again is not None
    assert dict(again.fields) == {"v": 4}
    assert again.expires_at is None


def test_without_ttl_there_is_no_expiry(store: Store) -> None:
    store.put(KIND, "r1", {"v": 1}, ttl=None)
    record = store.get(KIND, "r1")
    assert record is not None
    assert record.expires_at is None


def test_expires_at_follows_the_ttl(store: Store) -> None:
    store.put(KIND, "r1", {"v": 1}, ttl=3600)
    record = store.get(KIND, "r1")
    assert record is not None
    assert record.expires_at == pytest.approx(store.now() + 3600, abs=EXPIRY_SLACK)


def test_update_keeps_removes_or_resets_the_expiry(store: Store) -> None:
    store.put(KIND, "r1", {"v": 1}, ttl=30)
    first = store.get(KIND, "r1")
    assert first is not None
    assert first.expires_at is not None

    kept = store.update(KIND, "r1", set={"v": 2}, ttl=KEEP_TTL)
    assert kept.status is UpdateStatus.UPDATED
    assert kept.record is not None
    assert kept.record.expires_at == pytest.approx(first.expires_at, abs=0.01)
    default = store.update(KIND, "r1", increment={"n": 1})
    assert default.record is not None
    assert default.record.expires_at == pytest.approx(first.expires_at, abs=0.01)
    got = store.get(KIND, "r1")
    assert got is not None
    assert got.expires_at == pytest.approx(first.expires_at, abs=0.01)

    reset = store.update(KIND, "r1", ttl=600)
    assert reset.status is UpdateStatus.UPDATED
    assert reset.record is not None
    assert reset.record.expires_at == pytest.approx(store.now() + 600, abs=EXPIRY_SLACK)
    got = store.get(KIND, "r1")
    assert got is not None
    assert got.expires_at == pytest.approx(store.now() + 600, abs=EXPIRY_SLACK)

    removed = store.update(KIND, "r1", ttl=None)
    assert removed.status is UpdateStatus.UPDATED
    assert removed.record is not None
    assert removed.record.expires_at is None
    got = store.get(KIND, "r1")
    assert got is not None
    assert got.expires_at is None
    assert dict(got.fields) == {"v": 2, "n": 1}

    store.update(KIND, "r1", ttl=60)
    got = store.get(KIND, "r1")
    assert got is not None
    assert got.expires_at == pytest.approx(store.now() + 60, abs=EXPIRY_SLACK)


# --- update semantics -----------------------------------------------------------------------


def test_update_sets_and_increments_and_keeps_other_fields(store: Store) -> None:
    store.put(KIND, "r1", {"name": "ci", "uses": 5, "other": [1]})
    result = store.update(KIND, "r1", set={"name": "cd", "extra": None}, increment={"uses": 2})
    assert result.status is UpdateStatus.UPDATED
    expected = {"name": "cd", "uses": 7, "other": [1], "extra": None}
    assert result.record is not None
    assert result.record.kind == KIND
    assert result.record.id == "r1"
    assert dict(result.record.fields) == expected
    got = store.get(KIND, "r1")
    assert got is not None
    assert dict(got.fields) == expected


def test_increment_counts_an_absent_field_as_zero(store: Store) -> None:
    store.put(KIND, "r1", {})
    result = store.update(KIND, "r1", increment={"uses": 3, "down": -2})
    assert result.record is not None
    assert dict(result.record.fields) == {"uses": 3, "down": -2}
    got = store.get(KIND, "r1")
    assert got is not None
    assert type(got.fields["uses"]) is int


def test_update_of_a_missing_record_is_missing(store: Store) -> None:
    result = store.update(KIND, "nope", set={"a": 1}, increment={"b": 1})
    assert result.status is UpdateStatus.MISSING
    assert result.record is None
    assert store.get(KIND, "nope") is None


def test_expect_mismatch_is_a_conflict_and_changes_nothing(store: Store) -> None:
    store.put(KIND, "r1", {"status": "active", "uses": 1}, ttl=60)
    before = store.get(KIND, "r1")
    assert before is not None
    result = store.update(
        KIND, "r1", set={"status": "x"}, increment={"uses": 1}, expect={"status": "revoked"},
        ttl=None,
    )  # fmt: skip
    assert result.status is UpdateStatus.CONFLICT
    assert result.record is not None
    assert dict(result.record.fields) == {"status": "active", "uses": 1}
    after = store.get(KIND, "r1")
    assert after is not None
    assert dict(after.fields) == {"status": "active", "uses": 1}
    assert after.expires_at == pytest.approx(before.expires_at, abs=0.01)


def test_expect_compares_json_values_exactly(store: Store) -> None:
    store.put(KIND, "r1", {"n": 1, "s": "1", "l": [1, 2], "d": {"a": 1, "b": 2}, "z": None})
    for wrong in ({"n": "1"}, {"s": 1}, {"l": [2, 1]}, {"n": True}, {"z": 0}, {"d": {"a": 1}}):
        assert store.update(KIND, "r1", expect=wrong).status is UpdateStatus.CONFLICT, wrong
    right = {"n": 1, "s": "1", "l": [1, 2], "d": {"b": 2, "a": 1}, "z": None}
    assert store.update(KIND, "r1", expect=right).status is UpdateStatus.UPDATED


def test_expect_none_matches_an_absent_field(store: Store) -> None:
    store.put(KIND, "r1", {"a": 1})
    result = store.update(KIND, "r1", set={"owner": "me"}, expect={"owner": None})
    assert result.status is UpdateStatus.UPDATED
    again = store.update(KIND, "r1", set={"owner": "you"}, expect={"owner": None})
    assert again.status is UpdateStatus.CONFLICT
    assert again.record is not None
    assert again.record.fields["owner"] == "me"


def test_counters_are_exact_integers(store: Store) -> None:
    store.put(KIND, "r1", {"big": 2**53, "neg": -(2**53)})
    result = store.update(KIND, "r1", increment={"big": 1, "neg": -1})
    assert result.record is not None
    assert dict(result.record.fields) == {"big": 2**53 + 1, "neg": -(2**53) - 1}


@pytest.mark.parametrize("amount", [1.5, True, "1", None], ids=repr)
def test_increments_must_be_integers(store: Store, amount: Any) -> None:
    store.put(KIND, "r1", {"uses": 1})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r1", increment={"uses": amount})
    got = store.get(KIND, "r1")
    assert got is not None
    assert dict(got.fields) == {"uses": 1}


@pytest.mark.parametrize("current", ["abc", 1.5, [1], {"a": 1}, True], ids=repr)
def test_incrementing_a_field_that_is_not_an_integer_changes_nothing(
    store: Store, current: Any
) -> None:
    store.put(KIND, "r1", {"value": current, "uses": 1})
    with pytest.raises((InvalidInputError, StoreError)):
        store.update(KIND, "r1", set={"other": 1}, increment={"uses": 1, "value": 1})
    got = store.get(KIND, "r1")
    assert got is not None
    assert dict(got.fields) == {"value": current, "uses": 1}


# --- validation -----------------------------------------------------------------------------

BAD_IDS = ["a b", "{x}", "", "tab\there", "new\nline", "x" * 201]
BAD_KINDS = ["Key", "", "1abc", "a-b", "a b", "k" * 33]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_invalid_ids_are_refused_and_nothing_is_written(store: Store, bad_id: str) -> None:
    with pytest.raises(InvalidInputError):
        store.put(KIND, bad_id, {"v": 1})
    with pytest.raises(InvalidInputError):
        store.get(KIND, bad_id)
    with pytest.raises(InvalidInputError):
        store.delete(KIND, bad_id)
    with pytest.raises(InvalidInputError):
        store.update(KIND, bad_id, set={"v": 1})
    assert store.list(KIND).records == ()


@pytest.mark.parametrize("bad_kind", BAD_KINDS)
def test_invalid_kinds_are_refused(store: Store, bad_kind: str) -> None:
    with pytest.raises(InvalidInputError):
        store.put(bad_kind, "r1", {"v": 1})
    with pytest.raises(InvalidInputError):
        store.get(bad_kind, "r1")
    with pytest.raises(InvalidInputError):
        store.delete(bad_kind, "r1")
    with pytest.raises(InvalidInputError):
        store.update(bad_kind, "r1", set={"v": 1})
    with pytest.raises(InvalidInputError):
        store.list(bad_kind)
    assert store.get("key", "r1") is None


@pytest.mark.parametrize("bad_field", ["__exp", "__", "__anything", "", "a b", "{x}"])
def test_reserved_or_malformed_field_names_are_refused(store: Store, bad_field: str) -> None:
    with pytest.raises(InvalidInputError):
        store.put(KIND, "r1", {"ok": 1, bad_field: 1})
    assert store.get(KIND, "r1") is None
    store.put(KIND, "r2", {"ok": 1})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r2", set={bad_field: 1})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r2", increment={bad_field: 1})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r2", expect={bad_field: None})
    got = store.get(KIND, "r2")
    assert got is not None
    assert dict(got.fields) == {"ok": 1}


@pytest.mark.parametrize("bad_ttl", [0, 0.0, -1, -0.001])
def test_non_positive_ttls_are_refused(store: Store, bad_ttl: float) -> None:
    with pytest.raises(InvalidInputError):
        store.put(KIND, "r1", {"v": 1}, ttl=bad_ttl)
    assert store.get(KIND, "r1") is None
    store.put(KIND, "r2", {"v": 1}, ttl=60)
    before = store.get(KIND, "r2")
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r2", set={"v": 2}, ttl=bad_ttl)
    after = store.get(KIND, "r2")
    assert after is not None
    assert before is not None
    assert dict(after.fields) == {"v": 1}
    assert after.expires_at == pytest.approx(before.expires_at, abs=0.01)


NON_JSON: dict[str, Any] = {
    "object": object(),
    "nan": float("nan"),
    "inf": float("inf"),
    "-inf": -float("inf"),
    "set": {1, 2},
    "bytes": b"bytes",
    "object-in-list": [1, object()],
    "nan-in-dict": {"nested": float("nan")},
}


@pytest.mark.parametrize("bad_value", NON_JSON.values(), ids=NON_JSON.keys())
def test_values_that_are_not_json_are_refused(store: Store, bad_value: Any) -> None:
    with pytest.raises(InvalidInputError):
        store.put(KIND, "r1", {"ok": 1, "bad": bad_value})
    assert store.get(KIND, "r1") is None
    store.put(KIND, "r2", {"ok": 1})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r2", set={"ok": 2, "bad": bad_value})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r2", set={"ok": 2}, expect={"bad": bad_value})
    got = store.get(KIND, "r2")
    assert got is not None
    assert dict(got.fields) == {"ok": 1}


# --- the store itself -----------------------------------------------------------------------


def test_info_names_the_backend_and_its_version(store: Store, store_target: StoreTarget) -> None:
    info = store.info()
    assert isinstance(info, StoreInfo)
    assert info.backend == store_target.info_backend
    assert isinstance(info.version, str)
    assert info.version.strip()
    assert info.url


def test_now_is_the_wall_clock(store: Store) -> None:
    assert abs(store.now() - time.time()) < 5


def test_a_second_store_object_sees_the_same_records(store_target: StoreTarget) -> None:
    if not store_target.reopenable:
        pytest.skip("fakeredis data lives in one client object")
    first, second = store_target.open(), store_target.open()
    first.put(KIND, "shared", {"v": 1})
    record = second.get(KIND, "shared")
    assert isinstance(record, Record)
    assert dict(record.fields) == {"v": 1}
    assert second.delete(KIND, "shared") is True
    assert first.get(KIND, "shared") is None


def test_a_failing_increment_undoes_the_ones_before_it(store: Store) -> None:
    """One update is all or nothing, also when its second increment overflows 64 bits."""
    store.put(KIND, "r1", {"a": 0, "b": 2**63 - 1, "s": "old"})
    with pytest.raises(InvalidInputError, match="b"):
        store.update(KIND, "r1", increment={"a": 1, "b": 1}, set={"s": "new"})
    got = store.get(KIND, "r1")
    assert got is not None
    assert dict(got.fields) == {"a": 0, "b": 2**63 - 1, "s": "old"}


def test_a_failing_increment_leaves_absent_and_null_fields_as_they_were(store: Store) -> None:
    store.put(KIND, "r1", {"n": None, "bad": "text"})
    with pytest.raises(InvalidInputError):
        store.update(KIND, "r1", increment={"new": 1, "n": 1, "bad": 1})
    got = store.get(KIND, "r1")
    assert got is not None
    assert dict(got.fields) == {"n": None, "bad": "text"}


def test_a_field_cannot_be_set_and_incremented_at_once(store: Store) -> None:
    store.put(KIND, "r1", {"uses": 1})
    with pytest.raises(InvalidInputError, match="both set and incremented"):
        store.update(KIND, "r1", set={"uses": 5}, increment={"uses": 1})


@pytest.mark.parametrize("ttl", [float("inf"), float("nan"), 101 * 365 * 86400.0], ids=repr)
def test_absurd_ttls_are_refused_and_write_nothing(store: Store, ttl: float) -> None:
    with pytest.raises(InvalidInputError, match="100 years"):
        store.put(KIND, "r1", {"a": 1}, ttl=ttl)
    assert store.get(KIND, "r1") is None
    store.put(KIND, "r2", {"a": 1})
    with pytest.raises(InvalidInputError, match="100 years"):
        store.update(KIND, "r2", set={"a": 2}, ttl=ttl)
    got = store.get(KIND, "r2")
    assert got is not None and got.fields["a"] == 1 and got.expires_at is None
