"""Secrets at rest: files only their owner can read, values that never print themselves.

write_secret_file(path, new_secret_value())      # 0600 file, 0700 folder, atomic
secret = read_secret_file(path)                  # refuses a file others can read, as ssh does
secret.reveal()                                  # the bytes, only where they are used
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mcpsec.core.errors import SecretError

MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Secret:
    """A secret value with its provenance; `repr` and `str` never show the value."""

    value: bytes = field(repr=False)
    source: str

    def reveal(self) -> bytes:
        return self.value

    def __str__(self) -> str:
        return f"<secret from {self.source}>"


def new_secret_value(nbytes: int = 48) -> str:
    """A fresh random secret, URL-safe text so it survives env vars and copy-paste."""
    return secrets.token_urlsafe(nbytes)


def check_strength(secret: Secret, minimum: int = MIN_SECRET_BYTES) -> None:
    """Refuse a secret too short to resist offline guessing of HMAC-signed tokens."""
    if len(secret.value) < minimum:
        raise SecretError(
            f"the secret from {secret.source} is {len(secret.value)} bytes; "
            f"at least {minimum} are required",
            hint="generate one with `mcpsec config init` or `openssl rand -base64 48`",
        )


def read_secret_file(path: Path) -> Secret:
    """Read a secret file the way ssh reads a private key: only from a regular file that this
    user owns and nobody else can read, in a folder nobody else can write to.

    The checks look at the open descriptor, not the path, so the file cannot be swapped
    between the check and the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise SecretError(f"secret file {path} does not exist") from None
    except OSError as e:
        raise SecretError(f"cannot read secret file {path}: {e.strerror}") from e
    try:
        _refuse_unsafe(path, os.fstat(fd))
        with os.fdopen(fd, "rb", closefd=False) as f:
            value = f.read().strip()
    except OSError as e:
        raise SecretError(f"cannot read secret file {path}: {e.strerror}") from e
    finally:
        os.close(fd)
    if not value:
        raise SecretError(f"secret file {path} is empty")
    return Secret(value, f"file {path}")


def check_secret_file(path: Path, what: str = "secret file") -> None:
    """Refuse a file that holds a secret but is read by another program (a TLS private key,
    which `ssl` opens by path) under the rules `read_secret_file` applies."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise SecretError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise SecretError(f"cannot read {what} {path}: {e.strerror}") from e
    _refuse_unsafe(path, info, what)


def _refuse_unsafe(path: Path, info: os.stat_result, what: str = "secret file") -> None:
    if not stat.S_ISREG(info.st_mode):
        raise SecretError(f"{what} {path} is not a regular file")
    if info.st_uid != os.geteuid():
        raise SecretError(
            f"{what} {path} belongs to another user (uid {info.st_uid})",
            hint="a secret someone else could have written is not a secret; create your own",
        )
    if info.st_mode & 0o077:
        raise SecretError(
            f"{what} {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
            hint=f"run `chmod 600 {path}`",
        )
    # Others who can write to the folder can replace the file (unless the sticky bit stops them).
    folder = path.parent.stat().st_mode
    if folder & (stat.S_IWGRP | stat.S_IWOTH) and not folder & stat.S_ISVTX:
        raise SecretError(
            f"the folder of {what} {path} is writable by others",
            hint=f"run `chmod go-w {path.parent}`",
        )


def read_secret_stream(stream: IO[str], source: str = "standard input") -> Secret:
    """Read a secret from a stream (stdin for `-`), so it never has to appear on argv."""
    value = stream.read().strip().encode()
    if not value:
        raise SecretError(f"no secret was given on {source}")
    return Secret(value, source)


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) as 0700 if missing; an existing folder is left as it is.

    Several processes may open a fresh store at once: losing the race to create is fine.
    """
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        return
    path.chmod(0o700)  # mkdir's mode is filtered by the umask


def write_private_file(path: Path, content: bytes, *, overwrite: bool = False) -> None:
    """Write `content` to `path` as 0600, atomically: readers see the old file or the new one."""
    ensure_private_dir(path.parent)
    if path.exists() and not overwrite:
        raise FileExistsError(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            Path(tmp).replace(path)
        else:
            # link() never replaces: of two processes creating the same secret at once,
            # exactly one wins and the other gets FileExistsError (and uses the winner's).
            os.link(tmp, path)
            Path(tmp).unlink()
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
