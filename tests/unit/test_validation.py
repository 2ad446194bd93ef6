import pytest

from services.common.errors import InvalidArgument
from services.db import validation


@pytest.mark.parametrize("key", ["loss", "val/loss", "a.b-c_d e:f", "学习率", "x" * 250])
def test_valid_keys(key):
    assert validation.key("metric", key) == key


@pytest.mark.parametrize("key", ["", "x" * 251, "a/../b", "/root", "a//b", "semi;colon", "tab\there", "nul\x00"])
def test_invalid_keys(key):
    with pytest.raises(InvalidArgument):
        validation.key("metric", key)


def test_batch_limits_name_the_limit():
    validation.batch_sizes(1000, 100, 100)
    with pytest.raises(InvalidArgument, match="at most 1000 metrics"):
        validation.batch_sizes(1001, 0, 0)
    with pytest.raises(InvalidArgument, match="at most 100 params"):
        validation.batch_sizes(0, 101, 0)


@pytest.mark.parametrize("value", [0, 1, 50_000])
def test_max_results_in_range(value):
    assert validation.max_results(value) == (value or 1000)


@pytest.mark.parametrize("value", [-1, 50_001])
def test_max_results_out_of_range(value):
    with pytest.raises(InvalidArgument, match="max_results"):
        validation.max_results(value)


def test_artifact_locations(tmp_path):
    roots = [str(tmp_path)]
    assert validation.artifact_location("s3://bucket/x", roots) == "s3://bucket/x"
    assert validation.artifact_location(f"{tmp_path}/exp", roots) == f"file://{tmp_path}/exp"
    assert validation.artifact_location(f"file://{tmp_path}/exp", roots) == f"file://{tmp_path}/exp"
    (tmp_path / "link").symlink_to("/etc")
    for bad in [f"{tmp_path}/../x", "/etc", f"{tmp_path}/link/passwd", "s3://b/x#y", "s3://b/x?y=1", "file://remote-host/x",
                "javascript:alert(1)", f"{tmp_path}/a\x00b"]:
        with pytest.raises(InvalidArgument, match="artifact location"):
            validation.artifact_location(bad, roots)
