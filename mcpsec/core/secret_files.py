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


def loose_permissions(path: Path) -> int | None:
    """The group/other permission bits of `path` if any are set, else None."""
    mode = path.stat().st_mode
    return stat.S_IMODE(mode) if mode & 0o077 else None


def read_secret_file(path: Path) -> Secret:
    """Read a secret file, refusing one that others can read: a leaked secret cannot be unleaked."""
    try:
        if not path.is_file():
            raise SecretError(f"secret file {path} does not exist or is not a regular file")
        loose = loose_permissions(path)
        if loose is not None:
            raise SecretError(
                f"secret file {path} is readable by others (mode {loose:04o})",
                hint=f"run `chmod 600 {path}`",
            )
        value = path.read_bytes().strip()
    except OSError as e:
        raise SecretError(f"cannot read secret file {path}: {e.strerror}") from e
    if not value:
        raise SecretError(f"secret file {path} is empty")
    return Secret(value, f"file {path}")


def read_secret_stream(stream: IO[str], source: str = "standard input") -> Secret:
    """Read a secret from a stream (stdin for `-`), so it never has to appear on argv."""
    value = stream.read().strip().encode()
    if not value:
        raise SecretError(f"no secret was given on {source}")
    return Secret(value, source)


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) as 0700 if missing; an existing folder is left as it is."""
    if not path.exists():
        path.mkdir(mode=0o700, parents=True)
        path.chmod(0o700)


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
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
