"""mlgrid.identity's token lifetimes, and the CLI refusing a bad one before it calls anything."""
import datetime

import grpc
import pytest
from click.testing import CliRunner

from mlgrid.cli import identity, main
from mlgrid.exceptions import MlgridException
from mlgrid.identity import parse_expiry


@pytest.mark.parametrize("given, seconds", [
    ("45s", 45), ("90m", 5400), ("12h", 43_200), ("30d", 2_592_000), ("2w", 1_209_600), (" 7D ", 604_800),
    ("never", 0), ("NEVER", 0), (None, 0), (datetime.timedelta(hours=1), 3600),
])
def test_lifetimes(given, seconds):
    assert parse_expiry(given) == seconds


@pytest.mark.parametrize("given", ["30", "d", "3x", "1.5h", "0d", "-1h", "", datetime.timedelta(0)])
def test_bad_lifetimes_are_invalid_arguments(given):
    with pytest.raises(MlgridException) as error:
        parse_expiry(given)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT and "expires" in error.value.message


def test_the_cli_refuses_a_bad_lifetime_before_calling(monkeypatch):
    monkeypatch.setattr(identity, "MlgridClient", None)  # never reached
    result = CliRunner().invoke(main.cli, ["tokens", "create", "-n", "ci", "--expires", "3 days"])
    assert result.exit_code == 2
    assert "Invalid value for '--expires': expires: '3 days' is not a duration" in result.output
