"""Chart tests: every test that renders the chart needs helm (see chartlib.find_helm)."""
import pytest

from chartlib import HELM, VALUE_SETS, rendered


def pytest_collection_modifyitems(items):
    skip = pytest.mark.skip(reason="no helm binary: set HELM, put helm on PATH, or run `make .tools/helm` (make test does)")
    for item in items:
        if HELM is None and "tests/chart/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(params=list(VALUE_SETS))
def objects(request) -> tuple[dict, ...]:
    """The chart rendered with each value set in turn."""
    return rendered(request.param)
