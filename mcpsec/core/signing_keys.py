"""Token signing keys: a keyring folder of private key files and a manifest naming the signer.

    ring = Keyring(Path("~/.config/mcpsec/signing-keys").expanduser())
    ring.generate(Algorithm.EDDSA)      # the first key becomes the signer
    ring.rotate()                       # a new signer; older keys still verify until retired
    ring.jwks()                         # {"keys": [...]}: public halves, for resource servers

Private keys are PEM files (HS256: a random secret) written 0600 in a 0700 folder, and read
back only if they are still private, like every secret mcpsec keeps. Asymmetric keys are
named by their RFC 7638 thumbprint, so a `kid` always means the same public key; an HS256
key gets a random `kid`, since a thumbprint of a secret would let a guess be confirmed.
The manifest is changed under a lock and replaced atomically.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from mcpsec.core.clock import to_datetime
from mcpsec.core.errors import ConfigError, InvalidInputError, NotFoundError
from mcpsec.core.secret_files import (
    MIN_SECRET_BYTES,
    Secret,
    check_strength,
    ensure_private_dir,
    read_secret_file,
    write_private_file,
)

MANIFEST = "keyring.json"
_KID = re.compile(r"[A-Za-z0-9_-]{8,64}")
HS256_BYTES = 48  # comfortably above the 32-byte minimum


class Algorithm(StrEnum):
    EDDSA = "EdDSA"
    ES256 = "ES256"
    RS256 = "RS256"
    HS256 = "HS256"

    @property
    def symmetric(self) -> bool:
        return self is Algorithm.HS256


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: Algorithm
    created_at: float
    file: str  # relative to the keyring folder
    retired_at: float | None = None
    signer: bool = False

    @property
    def status(self) -> str:
        if self.retired_at is not None:
            return "retired"
        return "signing" if self.signer else "verify-only"


@dataclass(frozen=True)
class KeyListing:
    """What `signing-key list` shows: no key material."""

    kid: str = field(metadata={"essential": True})
    alg: Algorithm
    status: str
    created_at: datetime

    @classmethod
    def of(cls, key: SigningKey) -> KeyListing:
        return cls(key.kid, key.alg, key.status, to_datetime(key.created_at))


def parse_algorithm(text: str) -> Algorithm:
    for alg in Algorithm:
        if text.lower() == alg.value.lower():
            return alg
    choices = ", ".join(a.value for a in Algorithm)
    raise InvalidInputError(f"unknown algorithm {text!r}; use one of {choices}", field="alg")


class Keyring:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def entries(self) -> list[SigningKey]:
        return self._read()

    def listing(self) -> list[KeyListing]:
        return [KeyListing.of(k) for k in self._read()]

    def signer(self) -> SigningKey:
        for key in self._read():
            if key.signer:
                return key
        raise ConfigError(
            f"no signing key in {self.folder}",
            hint="create one with `mcpsec signing-key generate --alg EdDSA`",
        )

    def generate(self, alg: Algorithm, *, secret: Secret | None = None) -> SigningKey:
        """A new key; it signs from now on only if there was no signer yet.

        `secret` imports an existing HS256 secret (32 bytes or more) instead of making one,
        for deployments whose other services already share it.
        """
        if secret is not None:
            if not alg.symmetric:
                raise InvalidInputError(f"only an HS256 secret can be imported, not an {alg} key")
            check_strength(secret)
        with self._locked():
            keys = self._read()
            key = self._new_key(alg, signer=not any(k.signer for k in keys), secret=secret)
            self._write([*keys, key])
        return key

    def rotate(self, alg: Algorithm | None = None) -> SigningKey:
        """A new signer (of the current signer's algorithm unless told); the old one still
        verifies the tokens it signed until it is retired."""
        with self._locked():
            keys = self._read()
            current = next((k for k in keys if k.signer), None)
            chosen = alg or (current.alg if current else Algorithm.EDDSA)
            key = self._new_key(chosen, signer=True)
            self._write([*(replace(k, signer=False) for k in keys), key])
        return key

    def promote(self, kid: str) -> SigningKey:
        """Make an existing key the signer. The careful rotation: `generate` a key, publish
        the JWKS, wait until resource servers have fetched it, then promote it, so no server
        meets a token signed by a key it has not seen."""
        with self._locked():
            keys = self._read()
            found = next((k for k in keys if k.kid == kid), None)
            if found is None:
                raise NotFoundError(f"no signing key with kid {kid!r}")
            if found.retired_at is not None:
                raise InvalidInputError(f"key {kid} is retired; generate a new one")
            self.private_key(found)  # a key about to sign must load and match its kid now
            self._write([replace(k, signer=k.kid == kid) for k in keys])
        return replace(found, signer=True)

    def retire(self, kid: str) -> SigningKey:
        """Stop trusting a key: tokens it signed no longer verify."""
        with self._locked():
            keys = self._read()
            found = next((k for k in keys if k.kid == kid), None)
            if found is None:
                raise NotFoundError(f"no signing key with kid {kid!r}")
            if found.signer:
                raise InvalidInputError(
                    f"key {kid} is the current signer; rotate first, then retire it"
                )
            retired = (
                found if found.retired_at is not None else replace(found, retired_at=time.time())
            )
            self._write([retired if k.kid == kid else k for k in keys])
        return retired

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK Set: every asymmetric key that is not retired, never a secret."""
        return {
            "keys": [
                self._public_jwk(k)
                for k in self._read()
                if not k.alg.symmetric and k.retired_at is None
            ]
        }

    def private_key(self, key: SigningKey) -> Any:
        """The signing material: a cryptography private key, or the HS256 secret bytes.

        The material must be what the manifest says: an HS256 secret of 32 bytes or more, or
        a private key of the algorithm's type whose public half has the kid as thumbprint.
        A file swapped for another key is refused, never signed with or published.
        """
        secret = read_secret_file(self.folder / key.file).reveal()
        if key.alg.symmetric:
            if len(secret) < MIN_SECRET_BYTES:
                raise ConfigError(f"signing key {key.kid} is shorter than {MIN_SECRET_BYTES} bytes")
            return secret
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            private = load_pem_private_key(secret, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise ConfigError(f"signing key {key.kid} ({key.file}) is not a readable key") from None
        if not _fits(key.alg, private) or thumbprint(_jwk(private.public_key())) != key.kid:
            raise ConfigError(
                f"signing key file {key.file} does not hold the {key.alg} key {key.kid}",
                hint="the keyring was tampered with or damaged; restore it from a backup",
            )
        return private

    # -- plumbing --------------------------------------------------------------------------

    def _new_key(self, alg: Algorithm, *, signer: bool, secret: Secret | None = None) -> SigningKey:
        material, kid = (secret.reveal(), secrets.token_hex(8)) if secret else _generate(alg)
        name = _file_name(kid, alg)
        try:
            write_private_file(self.folder / name, material)
        except OSError as e:
            raise ConfigError(f"cannot write a key into {self.folder}: {e.strerror}") from e
        return SigningKey(kid, alg, time.time(), name, signer=signer)

    def _check_folder(self) -> None:
        """Only this user may change what is in the keyring: whoever can replace a key file
        or the manifest chooses what tokens are signed with and trusted."""
        info = self.folder.stat()
        if info.st_uid != os.geteuid():
            raise ConfigError(f"the keyring {self.folder} belongs to another user")
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(
                f"the keyring {self.folder} is writable by others",
                hint=f"run `chmod 700 {self.folder}`",
            )

    def _public_jwk(self, key: SigningKey) -> dict[str, str]:
        return {
            **_jwk(self.private_key(key).public_key()),
            "kid": key.kid,
            "alg": key.alg.value,
            "use": "sig",
        }

    def _read(self) -> list[SigningKey]:
        path = self.folder / MANIFEST
        if not self.folder.exists():
            return []
        self._check_folder()
        if not path.exists():
            if any(self.folder.glob("*.pem")) or any(self.folder.glob("*.secret")):
                raise ConfigError(
                    f"the keyring {self.folder} holds key files but no {MANIFEST}",
                    hint="restore the manifest from a backup rather than starting over",
                )
            return []
        try:
            document = json.loads(read_secret_file(path).reveal())
            keys = [_entry(k, document.get("signer")) for k in document["keys"]]
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"the keyring manifest {path} is damaged: {e}") from None
        _check_entries(path, keys, document.get("signer"))
        return keys

    def _write(self, keys: list[SigningKey]) -> None:
        signer = next((k.kid for k in keys if k.signer), None)
        document = {
            "version": 1,
            "signer": signer,
            "keys": [
                {
                    "kid": k.kid,
                    "alg": k.alg.value,
                    "created_at": k.created_at,
                    "file": k.file,
                    "retired_at": k.retired_at,
                }
                for k in keys
            ],
        }
        text = json.dumps(document, indent=2) + "\n"
        try:
            write_private_file(self.folder / MANIFEST, text.encode(), overwrite=True)
        except OSError as e:
            named = _named(self.folder)  # the manifest still on disk, unchanged
            for key in keys:  # a key file no manifest names would be an orphan
                if key.kid not in named:
                    (self.folder / key.file).unlink(missing_ok=True)
            raise ConfigError(f"cannot write {MANIFEST} in {self.folder}: {e.strerror}") from e

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes: two rotations must not lose a key."""
        try:
            ensure_private_dir(self.folder)
            self._check_folder()
            fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot use the keyring {self.folder}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _file_name(kid: str, alg: Algorithm) -> str:
    return f"{kid}.{'secret' if alg.symmetric else 'pem'}"


def _entry(raw: Any, signer: Any) -> SigningKey:
    alg = Algorithm(raw["alg"])
    kid = str(raw["kid"])
    retired = raw.get("retired_at")
    return SigningKey(
        kid,
        alg,
        float(raw["created_at"]),
        str(raw["file"]),
        float(retired) if retired is not None else None,
        kid == signer,
    )


def _check_entries(path: Path, keys: list[SigningKey], signer: Any) -> None:
    """Each kid once, each file named after its kid (no paths), a live signer if any."""
    kids = [k.kid for k in keys]
    for key in keys:
        if not _KID.fullmatch(key.kid) or key.file != _file_name(key.kid, key.alg):
            raise ConfigError(f"the keyring manifest {path} names a bad file for {key.kid!r}")
    if len(set(kids)) != len(kids):
        raise ConfigError(f"the keyring manifest {path} names a kid twice")
    if signer is not None and not any(k.signer and k.retired_at is None for k in keys):
        raise ConfigError(f"the keyring manifest {path} names a signer that is missing or retired")


def _named(folder: Path) -> set[str]:
    try:
        return {k["kid"] for k in json.loads((folder / MANIFEST).read_text())["keys"]}
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _fits(alg: Algorithm, private: Any) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if alg is Algorithm.EDDSA:
        return isinstance(private, ed25519.Ed25519PrivateKey)
    if alg is Algorithm.ES256:
        return isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
    return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048


def _generate(alg: Algorithm) -> tuple[bytes, str]:
    """(private material to store, kid)."""
    if alg.symmetric:
        return base64.urlsafe_b64encode(secrets.token_bytes(HS256_BYTES)), secrets.token_hex(8)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    private: Any
    if alg is Algorithm.EDDSA:
        private = ed25519.Ed25519PrivateKey.generate()
    elif alg is Algorithm.ES256:
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem, thumbprint(_jwk(private.public_key()))


def _jwk(public: Any) -> dict[str, str]:
    """The public key as a JWK (PyJWT's encoders), chosen by the key's type."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    if isinstance(public, ed25519.Ed25519PublicKey):
        return dict(OKPAlgorithm.to_jwk(public, as_dict=True))
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(public, as_dict=True))
    if isinstance(public, rsa.RSAPublicKey):
        jwk = dict(RSAAlgorithm.to_jwk(public, as_dict=True))
        jwk.pop("key_ops", None)  # RFC 7517 4.3: not together with "use"
        return jwk
    raise ConfigError("the keyring holds a key of a type mcpsec does not sign with")


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638: SHA-256 over the required members, in lexicographic order, no spaces."""
    required = {
        "OKP": ("crv", "kty", "x"),
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
    }
    members = {name: jwk[name] for name in required[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
