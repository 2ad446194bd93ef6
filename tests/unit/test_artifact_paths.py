"""Artifact paths and proxied URIs: normalized, or refused before any store sees them."""
import pytest

from services.artifacts.paths import Location, check_sha256, normalize, proxied_key, run_in_key
from services.common.errors import InvalidArgument

RUN = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("path, expected", [
    ("", ""), (".", ""), ("a", "a"), ("a/b.txt", "a/b.txt"), ("a//b/./c/", "a/b/c"), ("./x", "x"), ("...", "..."),
    ("dots..in.name", "dots..in.name"), ("ünïcode/名前.txt", "ünïcode/名前.txt"),
])
def test_normalize(path, expected):
    assert normalize(path) == expected


@pytest.mark.parametrize("path, message", [
    ("..", "'..'"), ("../x", "'..'"), ("a/../../other_run", "'..'"), ("a/..", "'..'"),
    ("/etc/passwd", "relative"), ("a\\b", "backslashes"), ("..\\x", "backslashes"), ("a\x00b", "NUL"),
    (".mlgrid-uploads/x", "reserved"), ("a/.mlgrid-uploads", "reserved"), ("x" * 256, "255 bytes"),
    ("/".join(["abcdefghij"] * 100), "limit is 1024"),
])
def test_normalize_refuses(path, message):
    with pytest.raises(InvalidArgument, match=message):
        normalize(path)


def test_proxied_key():
    assert proxied_key(f"mlgrid-artifacts:/0/{RUN}/artifacts") == f"0/{RUN}/artifacts"
    assert proxied_key("mlgrid-artifacts:///a/b/") == "a/b"
    assert proxied_key("mlflow-artifacts://host:5000/a") == "a"
    assert proxied_key("mlgrid-artifacts:/") == ""
    assert proxied_key("s3://bucket/a") is None
    assert proxied_key("/local/path") is None
    with pytest.raises(InvalidArgument):
        proxied_key("mlgrid-artifacts:/a/../b")
    with pytest.raises(InvalidArgument, match="query"):
        proxied_key("mlgrid-artifacts:/a?x=1")


def test_run_in_key():
    assert run_in_key(f"0/{RUN}/artifacts/model/w.bin") == (RUN, f"0/{RUN}/artifacts")
    assert run_in_key(f"team/x/{RUN}/artifacts") == (RUN, f"team/x/{RUN}/artifacts")
    assert run_in_key(f"0/{RUN}") is None
    assert run_in_key(f"0/{RUN}/other") is None
    assert run_in_key("0/not-a-run/artifacts") is None


def test_check_sha256_and_location():
    digest = "AB" * 32
    assert check_sha256(digest, "sha256") == digest.lower()
    assert check_sha256("", "sha256") == ""
    with pytest.raises(InvalidArgument, match="64 hexadecimal"):
        check_sha256("abc", "sha256")
    assert Location("0/r/artifacts", "a/b").key == "0/r/artifacts/a/b"
    assert Location("", "a").key == "a" and Location("s", "").key == "s"
