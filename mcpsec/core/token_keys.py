"""Which key signs new tokens and which keys verify them: the keyring, plus the config secret.

    keys = TokenKeys.load(Keyring(folder), find_jwt_secret(settings))
    keys.signer()          # SignWith(kid, alg, material): the keyring's signer, else the secret
    keys.verifiers()       # {kid: VerifyKey}: every key not retired, and the secret

The HS256 secret that `config init` writes is a key like the keyring's, with the fixed kid
`config-secret`, so a new installation can mint and verify with no keyring at all, and a
keyring added later takes over signing while tokens signed with the secret still verify.
A token's `kid` chooses among these keys only; its `alg` never chooses anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mcpsec.core.config_file import SECRET_FILE_NAME
from mcpsec.core.errors import ConfigError
from mcpsec.core.secret_files import Secret, check_strength, read_secret_file
from mcpsec.core.signing_keys import Algorithm, Keyring
from mcpsec.core.token_rules import VerifyKey

if TYPE_CHECKING:
    from mcpsec.core.config import Settings

CONFIG_SECRET_KID: Final = "config-secret"  # noqa: S105 - a key id, not a secret


@dataclass(frozen=True)
class SignWith:
    kid: str
    alg: Algorithm
    material: Any = field(repr=False)  # a cryptography private key, or HS256 secret bytes


@dataclass(frozen=True)
class TokenKeys:
    signing: SignWith | None
    verifying: Mapping[str, VerifyKey]

    @classmethod
    def load(cls, keyring: Keyring | None, secret: Secret | None) -> TokenKeys:
        """Read every key once; a damaged or unsafe key file is a configuration error now,
        not a surprise on some later token."""
        signing: SignWith | None = None
        verifying: dict[str, VerifyKey] = {}
        if secret is not None:
            check_strength(secret)
            material = secret.reveal()
            verifying[CONFIG_SECRET_KID] = VerifyKey(CONFIG_SECRET_KID, Algorithm.HS256, material)
            signing = SignWith(CONFIG_SECRET_KID, Algorithm.HS256, material)
        for entry in keyring.entries() if keyring else ():
            if entry.retired_at is not None:
                continue
            assert keyring is not None
            private = keyring.private_key(entry)
            public = private if entry.alg.symmetric else private.public_key()
            verifying[entry.kid] = VerifyKey(entry.kid, entry.alg, public)
            if entry.signer:  # the keyring's signer wins over the config secret
                signing = SignWith(entry.kid, entry.alg, private)
        return cls(signing, verifying)

    def signer(self) -> SignWith:
        if self.signing is None:
            raise ConfigError(
                "no key to sign tokens with",
                hint="run `mcpsec config init` (an HS256 secret) or "
                "`mcpsec signing-key generate --alg EdDSA`",
            )
        return self.signing

    def verifiers(self) -> Mapping[str, VerifyKey]:
        if not self.verifying:
            raise ConfigError(
                "no key to verify tokens with",
                hint="run `mcpsec config init` or `mcpsec signing-key generate`",
            )
        return self.verifying


def find_jwt_secret(settings: Settings) -> Secret | None:
    """The HS256 secret: MCPSEC_JWT_SECRET, else the file named in config, else the file
    `config init` writes next to the config file, if it is there."""
    if settings.tokens.secret is not None:
        return settings.tokens.secret
    if settings.tokens.secret_file is not None:
        return read_secret_file(settings.tokens.secret_file)
    default = default_secret_path(settings.config_path)
    return read_secret_file(default) if default.exists() else None


def default_secret_path(config_path: Path) -> Path:
    return config_path.parent / SECRET_FILE_NAME
