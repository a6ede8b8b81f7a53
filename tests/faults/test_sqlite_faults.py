"""Fault 7: the embedded SQLite store, locked by another process or damaged on disk.

(a) Another process holds the write lock past the busy timeout (`store.timeout`, 500 ms
here): every command that writes (keys create and revoke, token revoke, rate reset, and a
verify, which counts a use) exits 5 with one line naming the file and what to do, within
about the timeout, and leaves nothing half-written. In WAL mode reads go on beside the
writer; a process that takes the file in exclusive locking mode stops the reads too, and
those exit 5 alike.

(b) A damaged file (random bytes, a wiped header, a truncated copy, garbage pages): every
command exits 5 naming the file, never with a traceback, and never writes to it (what is
left can still be recovered); `doctor` fails its store check on it rather than crashing.

Commands run as real `mcpsec` processes where timing or the exact stderr matter, and
in-process for the larger matrix. Times are printed (`pytest -s`), never asserted beyond a
generous bound.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcpsec.core.api_keys import ApiKeys
from mcpsec.core.errors import StoreError
from mcpsec.store import open_store

from tests.support.cli import Cli, Ran, assert_store_failure, run_cli

TIMEOUT = "500ms"  # the busy timeout: MCPSEC_STORE_TIMEOUT
BOUND = 15.0  # seconds: generous, only there to catch a command that waits for the lock
PAGE = 4096  # SQLite's default page size, which mcpsec does not change
_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[2] == "exclusive":  # readers wait too: the file is this process's alone
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    db.execute("BEGIN EXCLUSIVE")
else:  # what another mcpsec writer holds while it writes
    db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()  # held until the test closes this process's stdin
db.execute("ROLLBACK")
db.close()
"""


@pytest.fixture
def mcpsec(tmp_path: Path) -> Callable[..., Ran]:
    """The real `mcpsec` command in an empty home, with a 500 ms store timeout."""
    return Cli(tmp_path, MCPSEC_STORE_TIMEOUT=TIMEOUT).process


@dataclass
class Filled:
    """A store file with an active key, a verified use, a token revocation and events."""

    path: Path
    url: str
    key_id: str
    api_key: str


def fill(path: Path, mcpsec: Callable[..., Ran]) -> Filled:
    url = f"sqlite:///{path}"
    made = mcpsec("--store", url, "keys", "create", "--name", "bot", "--role", "user", "--quiet")
    assert made.exit_code == 0, made.stderr
    api_key = made.stdout.strip()
    assert mcpsec("--store", url, "keys", "verify", "-", input=api_key).exit_code == 0
    assert mcpsec("--store", url, "token", "revoke", "--subject", "carol").exit_code == 0
    return Filled(path, url, api_key.split("_")[1], api_key)


def snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read as SQLite sees them (the WAL included)."""
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


# -- (a) a lock held by another process -----------------------------------------------------


class LockHolder:
    """A separate process holding the store's lock until `release`."""

    def __init__(self, path: Path, mode: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(path), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def lock_holder() -> Iterator[Callable[[Path, str], LockHolder]]:
    held: list[LockHolder] = []

    def hold(path: Path, mode: str) -> LockHolder:
        holder = LockHolder(path, mode)
        held.append(holder)
        return holder

    yield hold
    for holder in held:
        holder.release()


@pytest.mark.slow
def test_writes_under_a_held_lock_exit_5_in_time_and_leave_nothing_half_written(
    tmp_path: Path, mcpsec: Callable[..., Ran], lock_holder: Callable[[Path, str], LockHolder]
) -> None:
    store = fill(tmp_path / "mcpsec.db", mcpsec)
    before = snapshot(store.path)
    writes = {
        "keys create": ("keys", "create", "--name", "while-locked", "--quiet"),
        "keys revoke": ("keys", "revoke", store.key_id),
        "token revoke": ("token", "revoke", "--subject", "dave"),
        "rate reset": ("rate", "reset", "alice"),
        "keys verify": ("keys", "verify", "-"),
    }
    check = ("rate", "check", "alice")  # a decision: it follows rate.fail_open, and says so
    reads = {
        "keys list": ("keys", "list", "--json"),
        "keys show": ("keys", "show", store.key_id),
        "audit tail": ("audit", "tail", "--json"),
    }

    holder = lock_holder(store.path, "immediate")
    locked = {
        name: mcpsec("--store", store.url, *args, input=store.api_key)
        for name, args in writes.items()
    }
    read = {name: mcpsec("--store", store.url, *args) for name, args in reads.items()}
    opened = mcpsec("--store", store.url, *check)
    closed = mcpsec("--store", store.url, *check, env={"MCPSEC_RATE_FAIL_OPEN": "false"})
    holder.release()

    for name, ran in locked.items():
        # What, and what to do; on stdout no key that was never stored.
        assert_store_failure(ran, str(store.path), "locked", "store.timeout")
        assert ran.seconds < BOUND, (name, ran.seconds)
    for name, ran in read.items():  # WAL: readers do not wait for the writer
        assert ran.exit_code == 0, (name, ran)
    assert [k["key_id"] for k in json.loads(read["keys list"].stdout)["keys"]] == [store.key_id]
    assert (opened.exit_code, closed.exit_code) == (0, 1), (opened, closed)
    assert "allowed by rate.fail_open" in opened.stderr, opened
    assert "the store did not answer" in closed.stdout + closed.stderr, closed
    assert snapshot(store.path) == before  # nothing written, nothing half-written

    # The lock gone, the same commands go through: nothing was left in the way.
    for name, args in [*writes.items(), ("rate check", check)]:
        ran = mcpsec("--store", store.url, *args, input=store.api_key)
        assert ran.exit_code in (0, 1), (name, ran)  # verify after the revoke: 1, revoked
        assert ran.stderr == "", (name, ran.stderr)
    assert snapshot(store.path) != before
    reads_seen = ", ".join(f"{n} exit {r.exit_code}" for n, r in read.items())
    print(
        "\nSQLite write lock held by another process (busy timeout 500 ms): "
        + "; ".join(f"{n} exit {r.exit_code} in {r.seconds:.2f} s" for n, r in locked.items())
        + f"\n  while locked, reads: {reads_seen}; rate check: fail-open exit 0 "
        f"({opened.stderr.strip()}), fail-closed exit 1 ({closed.stdout.strip()})"
        + f"\n  message: {locked['keys create'].stderr.strip()}"
    )


@pytest.mark.slow
def test_an_exclusive_lock_stops_reads_too_with_exit_5(
    tmp_path: Path, mcpsec: Callable[..., Ran], lock_holder: Callable[[Path, str], LockHolder]
) -> None:
    store = fill(tmp_path / "mcpsec.db", mcpsec)
    lock_holder(store.path, "exclusive")
    for args in (("keys", "list"), ("audit", "tail"), ("keys", "show", store.key_id)):
        ran = mcpsec("--store", store.url, *args)
        assert_store_failure(ran, str(store.path), "locked")
        assert ran.seconds < BOUND
    doctor = mcpsec("--store", store.url, "doctor")
    assert doctor.exit_code == 5, doctor
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("fail")]
    assert len(failed) == 1 and "store" in failed[0] and str(store.path) in failed[0], failed
    print(f"\nexclusive lock, reads: exit 5 in {ran.seconds:.2f} s: {ran.stderr.strip()}")


# -- (b) a damaged file -----------------------------------------------------------------------


def _random_bytes(data: bytes) -> bytes:
    return random.Random(7).randbytes(len(data))


def _wiped_header(data: bytes) -> bytes:
    return b"\0" * 16 + data[16:]  # "SQLite format 3\0" gone


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _header_only(data: bytes) -> bytes:
    return data[:100]  # the 100-byte database header, and not one page behind it


def _garbage_pages(data: bytes) -> bytes:
    """Page 1 (the header and the schema) intact, every other page garbage: opening works,
    and so, before doctor ran `quick_check`, did its store check."""
    return data[:PAGE] + random.Random(7).randbytes(len(data) - PAGE)


def _garbage_last_page(data: bytes) -> bytes:
    """One damaged page that many commands never read: only a full check finds it."""
    return data[:-PAGE] + random.Random(7).randbytes(PAGE)


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "random bytes": _random_bytes,
    "wiped header": _wiped_header,
    "truncated to half": _truncated,
    "header only": _header_only,
    "garbage pages": _garbage_pages,
    "garbage last page": _garbage_last_page,
}
COMMANDS: dict[str, tuple[str, ...]] = {
    "keys list": ("keys", "list"),
    "keys create": ("keys", "create", "--name", "on-damage"),
    "keys show": ("keys", "show", "{key_id}"),
    "keys verify": ("keys", "verify", "{api_key}"),
    "audit tail": ("audit", "tail"),
}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str, str]:
    """A filled store file, checkpointed (so the main file holds everything), as bytes, with
    its key id and key."""
    folder = tmp_path_factory.mktemp("healthy")
    path = folder / "mcpsec.db"
    env = {"MCPSEC_STORE_TIMEOUT": TIMEOUT}
    made = run_cli(folder, "--store", f"sqlite:///{path}", "keys", "create", "-n", "bot", "-q")
    assert made.exit_code == 0, made.stderr
    api_key = made.stdout.strip()
    for _ in range(3):
        used = run_cli(folder, "--store", f"sqlite:///{path}", "keys", "verify", api_key, env=env)
        assert used.exit_code == 0, used.stderr
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert len(path.read_bytes()) >= 4 * PAGE  # enough pages to damage some
    return path.read_bytes(), api_key.split("_")[1], api_key


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_exits_5_naming_it_and_is_never_written(
    damage: str, tmp_path: Path, healthy: tuple[bytes, str, str]
) -> None:
    data, key_id, api_key = healthy
    path = tmp_path / "mcpsec.db"
    path.write_bytes(DAMAGE[damage](data))
    path.chmod(0o600)
    damaged = path.read_bytes()
    url = f"sqlite:///{path}"
    outcomes = {}
    for name, args in COMMANDS.items():
        filled = [a.format(key_id=key_id, api_key=api_key) for a in args]
        ran = run_cli(tmp_path, "--store", url, *filled)
        outcomes[name] = ran.exit_code
        if ran.exit_code == 0:  # a page it never read: a right answer is right
            continue
        # What, and what to do.
        assert_store_failure(ran, str(path), "damaged or is not an SQLite database", "backup")
    doctor = run_cli(tmp_path, "--store", url, "doctor")
    assert doctor.exit_code == 5, doctor
    failed = [line for line in doctor.stdout.splitlines() if line.startswith("fail")]
    assert len(failed) == 1 and failed[0].split()[1] == "store", doctor.stdout
    assert str(path) in failed[0] and "damaged" in failed[0], failed
    assert path.read_bytes() == damaged  # left as found: what is left can be recovered
    if damage != "garbage last page":  # every other damage is in what each command reads
        assert set(outcomes.values()) == {5}, outcomes
    else:
        assert outcomes["keys create"] == 5, outcomes
    print(f"\n{damage}: exit codes {outcomes}, doctor 5: {failed[0]}")


@pytest.mark.parametrize("damage", ["random bytes", "truncated to half"])
def test_the_real_command_on_a_damaged_file_prints_one_line(
    damage: str, tmp_path: Path, healthy: tuple[bytes, str, str], mcpsec: Callable[..., Ran]
) -> None:
    path = tmp_path / "mcpsec.db"
    path.write_bytes(DAMAGE[damage](healthy[0]))
    ran = mcpsec("--store", f"sqlite:///{path}", "keys", "list")
    assert_store_failure(ran, str(path), "damaged")


@pytest.mark.parametrize("damage", ["random bytes", "header only", "garbage pages"])
def test_the_library_raises_a_store_error_naming_the_file(
    damage: str, tmp_path: Path, healthy: tuple[bytes, str, str]
) -> None:
    """What a server embedding mcpsec sees: a StoreError (never sqlite3's own), at open or
    at the first call that reads a damaged page."""
    data, _, api_key = healthy
    path = tmp_path / "mcpsec.db"
    path.write_bytes(DAMAGE[damage](data))
    with pytest.raises(StoreError, match="damaged or is not an SQLite database") as caught:
        store = open_store(f"sqlite:///{path}", timeout=0.5)
        try:
            ApiKeys(store).verify(api_key)
        finally:
            store.close()
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
