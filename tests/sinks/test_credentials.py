"""The password and files a PLC sink's security settings name: read at connect time, a missing or unreadable one is
an error naming the setting and the path, and the password itself never shows in a repr or an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_ad.settings import Credentials
from stream_ad.sinks.credentials import password, readable
from stream_ad.sinks.plc import SinkConfigError

SECRET = "pw-Secret-5"


def test_the_password_comes_from_one_line_of_the_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(f"{SECRET}\n")
    got = password(Credentials(username="line4", password_file=tmp_path / "pw"))
    assert got is not None and got.get_secret_value() == SECRET
    assert SECRET not in repr(got) and SECRET not in str(got)


def test_the_password_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINE4_PW", SECRET)
    got = password(Credentials(username="line4", password_env="LINE4_PW"))
    assert got is not None and got.get_secret_value() == SECRET


def test_no_user_no_password() -> None:
    assert password(Credentials()) is None


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing_file", r"setting password_file: cannot read .*/gone: No such file or directory"),
        ("directory", r"setting password_file: cannot read .*/folder: Is a directory"),
        ("empty_file", r"setting password_file .*/pw: the password is empty"),
        ("unset_env", r"setting password_env: the environment variable LINE4_UNSET_PW is not set"),
    ],
)
def test_a_missing_password_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setup: str,
                                              message: str) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "pw").write_text("\n")
    monkeypatch.delenv("LINE4_UNSET_PW", raising=False)
    source = {"missing_file": {"password_file": tmp_path / "gone"},
              "directory": {"password_file": tmp_path / "folder"},
              "empty_file": {"password_file": tmp_path / "pw"},
              "unset_env": {"password_env": "LINE4_UNSET_PW"}}[setup]
    with pytest.raises(SinkConfigError, match=message):
        password(Credentials(username="line4", **source))


def test_readable_names_the_key_and_the_path(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    assert readable(tmp_path / "ca.pem", "tls.ca_file") == tmp_path / "ca.pem"
    with pytest.raises(SinkConfigError, match=rf"setting tls.ca_file: cannot read {tmp_path}/nope.pem: No such file"):
        readable(tmp_path / "nope.pem", "tls.ca_file")
