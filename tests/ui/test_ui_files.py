"""The UI's files on the gateway's HTTP port of a real `mlgrid server`: index.html at /, the assets
under /static/ with ETags (304 when unchanged), gzip when asked, and a 404 for what is not there."""
import gzip
import urllib.error
import urllib.request

import pytest


def fetch(url: str, **headers):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_index_and_assets(mlflow_server_url):
    status, headers, body = fetch(f"{mlflow_server_url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'src="static/js/app.js"' in body and headers["Cache-Control"] == "no-cache"
    for path in ("static/js/app.js", "static/js/charts.js", "static/app.css", "static/vendor/uPlot.iife.min.js"):
        status, headers, body = fetch(f"{mlflow_server_url}/{path}")
        assert status == 200 and body, path
    assert headers["Content-Type"].startswith("text/javascript") and "max-age" in headers["Cache-Control"]


def test_etag_revalidation_and_gzip(mlflow_server_url):
    url = f"{mlflow_server_url}/static/js/charts.js"
    _, headers, plain = fetch(url)
    status, _, _ = fetch(url, **{"If-None-Match": headers["ETag"]})
    assert status == 304
    status, zipped_headers, zipped = fetch(url, **{"Accept-Encoding": "gzip"})
    assert status == 200 and zipped_headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(zipped) == plain and len(zipped) < len(plain)


@pytest.mark.parametrize("path", ["static/nope.js", "static/../ui.py", "static/js/"])
def test_unknown_files_are_404(mlflow_server_url, path):
    status, _, _ = fetch(f"{mlflow_server_url}/{path}")
    assert status == 404
