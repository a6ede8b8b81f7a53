import io
import stat

import pytest
from mcpsec.core.errors import SecretError
from mcpsec.core.secret_files import (
    Secret,
    check_strength,
    new_secret_value,
    read_secret_file,
    read_secret_stream,
    write_private_file,
)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_write_private_file_is_0600_in_a_0700_folder(tmp_path):
    target = tmp_path / "new" / "jwt.secret"
    write_private_file(target, b"value")
    assert mode(target) == 0o600
    assert mode(target.parent) == 0o700
    assert target.read_bytes() == b"value"


def test_write_private_file_never_overwrites_unless_told(tmp_path):
    target = tmp_path / "s"
    write_private_file(target, b"one")
    with pytest.raises(FileExistsError):
        write_private_file(target, b"two")
    assert target.read_bytes() == b"one"
    write_private_file(target, b"two", overwrite=True)
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temp file left behind


def test_read_refuses_a_file_others_can_read(tmp_path):
    target = tmp_path / "s"
    write_private_file(target, new_secret_value().encode())
    target.chmod(0o644)
    with pytest.raises(SecretError, match=r"readable by others.*0644"):
        read_secret_file(target)


def test_read_strips_the_newline_and_records_the_source(tmp_path):
    target = tmp_path / "s"
    write_private_file(target, b"abc\n")
    secret = read_secret_file(target)
    assert secret.reveal() == b"abc"
    assert str(target) in secret.source


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_read_refuses_empty(tmp_path, content):
    target = tmp_path / "s"
    write_private_file(target, content)
    with pytest.raises(SecretError, match="empty"):
        read_secret_file(target)


def test_missing_file(tmp_path):
    with pytest.raises(SecretError, match="does not exist"):
        read_secret_file(tmp_path / "nope")


def test_secret_never_prints_its_value():
    secret = Secret(b"hunter2-hunter2", "test")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)


def test_strength():
    check_strength(Secret(new_secret_value().encode(), "x"))
    with pytest.raises(SecretError, match="at least 32"):
        check_strength(Secret(b"short", "x"))


def test_stream():
    assert read_secret_stream(io.StringIO("abc\n")).reveal() == b"abc"
    with pytest.raises(SecretError):
        read_secret_stream(io.StringIO(""))
