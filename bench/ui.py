"""The web UI's data paths and pages; prints one JSON object.

    .venv/bin/python bench/ui.py [--database-url URL]

On `mlgrid server` with SQLite and with PostgreSQL (a fresh database on --database-url's server):
- the downsampled history of a 1,000,000-point metric through the REST API (get-history-bulk-interval,
  2,500 points), a zoom into 2,000 steps of it (full resolution), and 100 runs of 10,000 points each
  downsampled together (a 100-run overlay);
then in headless Chromium (Debian's) on the SQLite server:
- the run page of a run with 5,000 metric keys: time to its first drawn chart and to every card in view;
- the 1,000,000-point chart, and the 100-run overlay chart: time to drawn.
"""
import argparse
import json
import os
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import fresh_database, latencies_ms, start_server  # noqa: E402

import numpy as np  # noqa: E402

from mlgrid import MlgridClient  # noqa: E402
from mlgrid.v1 import tracking_pb2 as pb  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
BIG = 1_000_000
OVERLAY_RUNS, OVERLAY_POINTS = 100, 10_000
KEYS = 5000


def series(key: str, n: int, seed: int) -> pb.MetricSeries:
    steps = np.arange(n, dtype=np.int64)
    values = np.random.default_rng(seed).normal(size=n).cumsum()
    return pb.MetricSeries(key=key, steps=steps, timestamps=steps + 1_700_000_000_000, values=values)


def seed(grpc_uri: str) -> dict:
    """The big run, the 100 overlay runs and the run of 5,000 keys; returns their ids."""
    client = MlgridClient(grpc_uri)
    exp_id = client.create_experiment(f"bench-ui-{uuid.uuid4().hex[:8]}")
    new_run = lambda: client.create_run(exp_id).info.run_id  # noqa: E731
    batch = lambda run_id, metrics: pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id, metrics=metrics)  # noqa: E731
    big = new_run()
    client.ingest([batch(big, [series("loss", BIG, 0)])])
    overlay = [new_run() for _ in range(OVERLAY_RUNS)]
    client.ingest(batch(run_id, [series("loss", OVERLAY_POINTS, i)]) for i, run_id in enumerate(overlay))
    keys = new_run()
    client.ingest([batch(keys, [series(f"layer_{k:04d}/grad_norm", 20, k) for k in range(KEYS)])])
    return {"big": big, "overlay": overlay, "keys": keys}


def bulk_interval(http_url: str, run_ids: list[str], **params) -> int:
    query = urllib.parse.urlencode({"run_ids": run_ids, "metric_key": "loss", **params}, doseq=True)
    with urllib.request.urlopen(f"{http_url}/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?{query}") as response:
        return len(json.load(response)["metrics"])


def fetch_figures(http_url: str, runs: dict) -> dict:
    big = [runs["big"]]
    return {
        "million_points_downsampled": {
            "points": bulk_interval(http_url, big, max_results=2500),
            **latencies_ms(lambda: bulk_interval(http_url, big, max_results=2500), repeats=10),
        },
        "million_points_zoom_2000_steps": {
            "points": bulk_interval(http_url, big, start_step=500_000, end_step=501_999, max_results=2500),
            **latencies_ms(lambda: bulk_interval(http_url, big, start_step=500_000, end_step=501_999, max_results=2500), repeats=10),
        },
        "overlay_100_runs_x_10000_points": {
            "points": bulk_interval(http_url, runs["overlay"], max_results=400),
            **latencies_ms(lambda: bulk_interval(http_url, runs["overlay"], max_results=400), repeats=5),
        },
    }


def browser_figures(http_url: str, runs: dict) -> dict:
    from playwright.sync_api import sync_playwright

    figures = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})

        def timed(fragment: str, selector: str) -> float:
            page.goto(f"{http_url}/#/")  # leave the previous view, so the next one starts cold
            page.wait_for_selector("table.grid")
            started = time.perf_counter()
            page.goto(f"{http_url}/{fragment}")
            page.wait_for_selector(selector, timeout=60_000)
            return round((time.perf_counter() - started) * 1000, 1)

        keys_page = f"#/runs/{runs['keys']}?tab=charts"
        figures["run_5000_keys_first_chart_ms"] = timed(keys_page, ".chart-card[data-state=drawn]")
        page.wait_for_function(
            "[...document.querySelectorAll('.chart-card')].filter(c => c.getBoundingClientRect().top < innerHeight)"
            ".every(c => c.dataset.state === 'drawn')", timeout=60_000,
        )
        figures["run_5000_keys_cards_in_view"] = page.evaluate("window.mlgridCharts.live")
        figures["million_point_chart_ms"] = timed(f"#/runs/{runs['big']}?tab=charts", ".chart-card[data-state=drawn]")
        overlay = f"#/compare?runs={','.join(runs['overlay'])}"
        figures["overlay_100_runs_chart_ms"] = timed(overlay, ".chart-card[data-key=loss][data-state=drawn]")
        # Redrawing the 100-run chart (what a smoothing change does), in the page.
        figures["overlay_100_runs_redraw_ms"] = page.evaluate("""async () => {
            const input = document.querySelector('input[name=smoothing]');
            const started = performance.now();
            input.value = 0.6;
            input.dispatchEvent(new Event('input'));
            await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve)));
            return Math.round((performance.now() - started) * 10) / 10;
        }""")
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        with start_server(f"sqlite:///{tmp}/bench.db", f"{tmp}/artifacts") as (grpc_uri, http_url):
            runs = seed(grpc_uri)
            result["sqlite"] = fetch_figures(http_url, runs)
            if os.path.exists(CHROMIUM):
                result["chromium"] = browser_figures(http_url, runs)
        with fresh_database(args.database_url) as db_url, start_server(db_url, f"{tmp}/pg-artifacts") as (grpc_uri, http_url):
            result["postgresql"] = fetch_figures(http_url, seed(grpc_uri))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
