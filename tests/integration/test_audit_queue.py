"""The audit log's queue under the things that go wrong in a real process: a bad event, a
fork, no thread to be had, an interrupt, a store that does not keep up."""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from mcpsec.core import audit as audit_module
from mcpsec.core.audit import AuditLog, Outcome
from mcpsec.core.errors import InvalidInputError, StoreError
from mcpsec.store import Store, open_store

KEY = b"k" * 48


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return open_store(f"sqlite:///{tmp_path}/audit.db")


def test_a_bad_value_fails_its_own_caller_and_nobody_elses(store: Store) -> None:
    log = AuditLog(store, KEY)
    with pytest.raises(InvalidInputError):
        log.record("rate.reset", Outcome.ALLOWED, details={"when": object()})
    log.verdict("key.verified", Outcome.ALLOWED, details={"x": float("nan")})
    log.change("key.revoked", Outcome.ALLOWED, key_id="4fJq8Lw2Xc9a")  # not refused
    assert [e.type for e in log.events()] == ["key.revoked"]
    assert len(log.failures) == 1 and "not JSON" in log.failures[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_records_its_own_events(store: Store, tmp_path: Path) -> None:
    log = AuditLog(store, KEY)
    log.verdict("key.verified", Outcome.ALLOWED, subject="parent")  # starts the thread
    with warnings.catch_warnings():  # 3.12+ warns about forking with threads: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        code = 1
        try:
            log.record("rate.reset", Outcome.ALLOWED, subject="child")
            log.verdict("key.verified", Outcome.ALLOWED, subject="child-verdict")
            code = 0 if log.flush(timeout=20) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    subjects = [e.subject for e in AuditLog(store, KEY).events()]
    assert sorted(map(str, subjects)) == ["child", "child-verdict", "parent"]
    assert AuditLog(store, KEY).verify().intact


def test_without_a_thread_to_be_had_a_verdict_is_appended_by_its_caller(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    log = AuditLog(store, KEY)
    log.verdict("key.verified", Outcome.ALLOWED, subject="late")  # no exception
    assert [e.subject for e in log.events()] == ["late"]
    assert log.failures == []


def test_an_interrupted_append_fails_its_events_and_the_log_goes_on(store: Store) -> None:
    log = AuditLog(store, KEY)
    real = store.log_append_after
    calls = 0

    def interrupted(*args: Any, **options: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyboardInterrupt
        return real(*args, **options)

    log.store.log_append_after = interrupted  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        log.record("rate.reset", Outcome.ALLOWED, subject="interrupted")
    assert log.flush(timeout=5)
    log.change("rate.reset", Outcome.ALLOWED, subject="after")
    assert [e.subject for e in log.events()] == ["after"]


def test_verdicts_beyond_the_queue_limit_are_counted_not_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "_MAX_QUEUED", 5)
    log = AuditLog(store, KEY)
    release = threading.Event()
    real = store.log_append_after

    def stuck(*args: Any, **options: Any) -> Any:
        release.wait(30)
        return real(*args, **options)

    log.store.log_append_after = stuck  # type: ignore[method-assign]
    for n in range(20):
        log.verdict("key.verified", Outcome.ALLOWED, details={"n": n})
    release.set()
    failures = log.failures
    assert failures and "dropped" in failures[-1]
    kept = int(failures[-1].split()[0])
    assert len(list(log.events())) == 20 - kept


def test_a_server_logs_each_failure(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    dead = open_store("redis://127.0.0.1:9/0", timeout=0.2)
    try:
        log = AuditLog(dead, KEY)
        log.log_failures = True
        with caplog.at_level("WARNING", logger="mcpsec.audit"):
            log.verdict("key.verified", Outcome.DENIED, reason="revoked")
            assert log.flush(timeout=30)
            deadline = time.monotonic() + 5
            while not caplog.records and time.monotonic() < deadline:
                time.sleep(0.01)
        assert any("key.verified" in r.getMessage() for r in caplog.records)
        with pytest.raises(StoreError):
            log.record("x.y", Outcome.ALLOWED)
    finally:
        dead.close()
