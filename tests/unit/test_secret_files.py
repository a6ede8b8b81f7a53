import io
import os
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


def test_a_secret_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away to test this")
    target = tmp_path / "s"
    write_private_file(target, new_secret_value().encode())
    os.chown(target, 1234, 1234)
    with pytest.raises(SecretError, match="belongs to another user"):
        read_secret_file(target)


def test_a_secret_in_a_folder_others_can_write_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    target = folder / "s"
    write_private_file(target, new_secret_value().encode())
    folder.chmod(0o777)
    with pytest.raises(SecretError, match="writable by others"):
        read_secret_file(target)
    folder.chmod(0o1777)  # sticky, like /tmp: others cannot replace our file
    assert read_secret_file(target).reveal()


def test_a_symlink_to_a_private_file_is_followed(tmp_path):
    """Kubernetes mounts secrets through symlinks; the target is what gets checked."""
    target = tmp_path / "real"
    write_private_file(target, b"x" * 40)
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_secret_file(link).reveal() == b"x" * 40


def test_parallel_folder_creation_does_not_fail(tmp_path):
    import threading

    from mcpsec.core.secret_files import ensure_private_dir

    folder = tmp_path / "a" / "b"
    errors = []

    def create():
        try:
            ensure_private_dir(folder)
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and folder.is_dir()
