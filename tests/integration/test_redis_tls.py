"""`rediss://` against real TLS redis-servers: the CA, hostname checking, mutual TLS, and every
certificate problem as one line with exit 5 (a file problem: exit 4), on every client.

Each server listens on a plain port too, only so that the test support can see it started.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mcpsec.core.api_keys import ApiKeys, AsyncApiKeys
from mcpsec.core.config import Settings, load_settings
from mcpsec.core.errors import StoreUnavailableError
from mcpsec.store import RedisOptions, open_store
from mcpsec.store.redis_async import open_async_client
from mcpsec.store.redis_errors import translate
from mcpsec.store.redis_options import apply_options
from mcpsec.store.url import parse_store_url
from redis.exceptions import RedisClusterException

from tests.support.cli import Ran, assert_error_line, run_cli
from tests.support.redis_servers import (
    RedisServer,
    ci_is_set,
    free_port,
    require_binaries,
    start_redis_server,
)
from tests.support.tls_certs import Pki, make_pki

pytestmark = pytest.mark.redis_server


@dataclass
class TlsServer:
    server: RedisServer
    tls_port: int

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.tls_port}/0"


def require_tls_build() -> None:
    """Skip when this redis-server was built without TLS (fail on CI, which must not skip)."""
    require_binaries("redis-server", "redis-cli")
    probe = subprocess.run(
        ["redis-server", "--port", "0", "--tls-port", "0"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if "Bad directive" not in probe.stdout + probe.stderr:
        return
    message = "redis-server was built without TLS support"
    if ci_is_set():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


def start_tls_server(folder: Path, pki: Pki, *, clients: str = "optional") -> TlsServer:
    """`clients`: --tls-auth-clients, "yes" for mutual TLS."""
    tls_port = free_port()
    server = start_redis_server(
        folder,
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(pki.server_cert),
        "--tls-key-file", str(pki.server_key),
        "--tls-ca-cert-file", str(pki.ca),
        "--tls-auth-clients", clients,
    )  # fmt: skip
    return TlsServer(server, tls_port)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_tls_build()
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def pki(folder: Path) -> Pki:
    return make_pki(folder / "pki")


@pytest.fixture(scope="module")
def stranger(folder: Path) -> Pki:
    """Another CA, which signed none of the servers' certificates."""
    return make_pki(folder / "stranger")


@pytest.fixture(scope="module")
def elsewhere(folder: Path) -> Pki:
    """A CA whose server certificate names db.example.com, not the 127.0.0.1 we connect to."""
    return make_pki(folder / "elsewhere", names=("db.example.com",))


def _server(folder: Path, pki: Pki, clients: str = "optional") -> Iterator[TlsServer]:
    tls = start_tls_server(folder, pki, clients=clients)
    with tls.server:
        yield tls


@pytest.fixture(scope="module")
def tls_server(folder: Path, pki: Pki) -> Iterator[TlsServer]:
    yield from _server(folder / "plain-tls", pki)


@pytest.fixture(scope="module")
def mismatch_server(folder: Path, elsewhere: Pki) -> Iterator[TlsServer]:
    yield from _server(folder / "mismatch", elsewhere)


@pytest.fixture(scope="module")
def expired_server(folder: Path) -> Iterator[TlsServer]:
    yield from _server(folder / "expired", make_pki(folder / "expired-pki", expired=True))


@pytest.fixture(scope="module")
def mtls_server(folder: Path, pki: Pki) -> Iterator[TlsServer]:
    yield from _server(folder / "mtls", pki, clients="yes")


def tls_env(
    ca: Path | None = None, cert: Path | None = None, key: Path | None = None
) -> dict[str, str]:
    env = {"MCPSEC_STORE_TIMEOUT": "2s"}
    for name, path in (("CA", ca), ("CERT", cert), ("KEY", key)):
        if path is not None:
            env[f"MCPSEC_STORE_TLS_{name}_FILE"] = str(path)
    return env


def keys_list(home: Path, url: str, env: dict[str, str]) -> Ran:
    return run_cli(home, "--store", url, "keys", "list", "--json", env=env)


def test_rediss_with_the_ca_connects(tmp_path, tls_server, pki):
    ran = keys_list(tmp_path, tls_server.url, tls_env(pki.ca))
    assert ran.exit_code == 0, ran.output
    created = run_cli(
        tmp_path, "--store", tls_server.url, "keys", "create", "--name", "ci", "--quiet",
        env=tls_env(pki.ca),
    )  # fmt: skip
    assert created.exit_code == 0, created.output


def test_the_ca_from_the_config_file_relative_to_it(tmp_path, tls_server, pki):
    config = tmp_path / "cfg" / "mcpsec" / "config.toml"
    config.parent.mkdir(parents=True)
    shutil.copy(pki.ca, config.parent / "redis-ca.pem")
    config.write_text(f'[store]\nurl = "{tls_server.url}"\ntls_ca_file = "redis-ca.pem"\n')
    ran = run_cli(tmp_path, "keys", "list", "--json")
    assert ran.exit_code == 0, ran.output


@pytest.mark.parametrize("ca", ["stranger", "system"])
def test_an_unknown_ca_is_one_line_with_exit_5(tmp_path, tls_server, stranger, ca):
    env = tls_env(stranger.ca if ca == "stranger" else None)
    line = assert_error_line(
        keys_list(tmp_path, tls_server.url, env), 5, "certificate verify failed"
    )
    assert tls_server.url in line and "tls_ca_file" in line


def test_a_hostname_mismatch_is_one_line_and_passes_without_the_check(
    tmp_path, mismatch_server, elsewhere
):
    env = tls_env(elsewhere.ca)
    ran = keys_list(tmp_path, mismatch_server.url, env)
    assert_error_line(ran, 5, "certificate verify failed", "mismatch", "tls_check_hostname")
    ran = keys_list(tmp_path, mismatch_server.url, env | {"MCPSEC_STORE_TLS_CHECK_HOSTNAME": "no"})
    assert ran.exit_code == 0, ran.output


def test_an_expired_certificate_is_one_line(tmp_path, expired_server):
    ca = expired_server.server.folder.parent / "expired-pki" / "ca.pem"
    assert_error_line(keys_list(tmp_path, expired_server.url, tls_env(ca)), 5, "expired")


def test_mutual_tls_needs_the_client_certificate(tmp_path, mtls_server, pki):
    ran = keys_list(tmp_path, mtls_server.url, tls_env(pki.ca))
    assert_error_line(ran, 5, "client certificate", "tls_cert_file")
    ran = keys_list(tmp_path, mtls_server.url, tls_env(pki.ca, pki.client_cert, pki.client_key))
    assert ran.exit_code == 0, ran.output


def test_a_client_certificate_from_another_ca_is_refused_in_one_line(
    tmp_path, mtls_server, pki, stranger
):
    env = tls_env(pki.ca, stranger.client_cert, stranger.client_key)
    assert_error_line(keys_list(tmp_path, mtls_server.url, env), 5, "failed TLS")


def test_rediss_to_a_port_without_tls_is_one_line(tmp_path, tls_server, pki):
    url = f"rediss://127.0.0.1:{tls_server.server.port}/0"
    env = tls_env(pki.ca) | {"MCPSEC_STORE_TIMEOUT": "500ms"}
    assert_error_line(keys_list(tmp_path, url, env), 5, "TLS")


def test_a_plain_url_to_the_tls_port_hints_at_rediss(tmp_path, tls_server):
    url = f"redis://127.0.0.1:{tls_server.tls_port}/0"
    assert_error_line(keys_list(tmp_path, url, {}), 5, "write rediss://")


def test_a_missing_tls_file_is_exit_4_naming_it(tmp_path, tls_server):
    missing = tmp_path / "nowhere" / "ca.pem"
    line = assert_error_line(keys_list(tmp_path, tls_server.url, tls_env(missing)), 4)
    assert str(missing) in line and "store.tls_ca_file" in line


def test_a_client_key_others_can_read_is_refused(tmp_path, mtls_server, pki):
    loose = tmp_path / "client.key"
    shutil.copy(pki.client_key, loose)
    loose.chmod(0o644)
    ran = keys_list(tmp_path, mtls_server.url, tls_env(pki.ca, pki.client_cert, loose))
    line = assert_error_line(ran, 4, "readable by others", str(loose))
    assert "chmod 600" in line


def test_a_key_that_is_not_the_certificates_is_exit_4(tmp_path, mtls_server, pki, stranger):
    env = tls_env(pki.ca, pki.client_cert, stranger.client_key)
    assert_error_line(keys_list(tmp_path, mtls_server.url, env), 4, "does not load")


def test_tls_files_with_a_plain_url_are_refused(tmp_path, tls_server, pki):
    url = f"redis://127.0.0.1:{tls_server.server.port}/0"
    assert_error_line(keys_list(tmp_path, url, tls_env(pki.ca)), 4, "does not use TLS")


def test_doctor_over_mutual_tls(tmp_path, mtls_server, pki):
    env = tls_env(pki.ca, pki.client_cert, pki.client_key)
    ran = run_cli(tmp_path, "--store", mtls_server.url, "doctor", env=env)
    assert ran.exit_code == 0, ran.output
    assert "rediss://127.0.0.1" in ran.stdout and "acl " in ran.stdout


def settings_for(home: Path, url: str, env: dict[str, str]) -> Settings:
    return load_settings({"HOME": str(home), "MCPSEC_STORE_URL": url, **env})


async def verify_async(keys: ApiKeys, api_key: str) -> bool:
    async_keys = AsyncApiKeys(keys)
    try:
        return (await async_keys.verify(api_key)).valid
    finally:
        await async_keys.aclose()


def test_the_async_client_uses_the_tls_options(tmp_path, mtls_server, pki, stranger):
    good = settings_for(tmp_path, mtls_server.url, tls_env(pki.ca, pki.client_cert, pki.client_key))
    store = good.store.open()
    try:
        keys = ApiKeys.from_settings(good, store)
        created = keys.create("async")
        assert asyncio.run(verify_async(keys, created.api_key)) is True
    finally:
        store.close()
    bad = settings_for(
        tmp_path, mtls_server.url, tls_env(stranger.ca, pki.client_cert, pki.client_key)
    )
    other = bad.store.open()
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            asyncio.run(verify_async(ApiKeys.from_settings(bad, other), created.api_key))
    finally:
        other.close()
    assert "certificate verify failed" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cluster_client_reports_tls_failures_in_one_line(tls_server, stranger):
    """A cluster client wraps the TLS error once more (RedisClusterException): still one line.
    A standalone TLS server is enough: the handshake fails before any cluster question."""
    url = f"rediss+cluster://127.0.0.1:{tls_server.tls_port}"
    with pytest.raises(StoreUnavailableError) as caught:
        open_store(url, timeout=2.0, options=RedisOptions(tls_ca_file=stranger.ca))
    assert "certificate verify failed" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_async_cluster_client_reports_tls_failures_in_one_line(tls_server, stranger):
    url, extra = apply_options(
        parse_store_url(f"rediss+cluster://127.0.0.1:{tls_server.tls_port}"),
        RedisOptions(tls_ca_file=stranger.ca),
    )

    async def connect() -> None:
        client = open_async_client(url, 2.0, extra)
        try:
            await client.initialize()
        finally:
            await client.aclose()

    with pytest.raises(RedisClusterException) as caught:
        asyncio.run(connect())
    error = translate(caught.value, url.redacted)
    assert isinstance(error, StoreUnavailableError)
    assert "certificate verify failed" in str(error) and "\n" not in str(error)
