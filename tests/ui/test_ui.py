"""The web UI in a real browser against a real `mlgrid server`: pages load, the filter box filters,
sorting sorts, charts draw (1,000,000 points from a bounded, downsampled fetch with the spike kept;
5,000 metric keys with only the cards in view drawn), compare highlights differences, and the
registry pages show versions and aliases."""
import time
import uuid

import mlflow
import numpy as np
import pytest
from conftest import unique

from mlgrid import MlgridClient
from mlgrid.v1 import tracking_pb2 as pb

BULK_INTERVAL = "metrics/get-history-bulk-interval"
SPIKE_STEP, SPIKE = 612_345, 1000.0

# The number of non-blank pixels of a card's chart canvas: uPlot drew lines when there are many.
DRAWN_PIXELS = """card => {
  const canvas = card.querySelector('canvas');
  if (!canvas) return 0;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
  return n;
}"""


@pytest.fixture(scope="module")
def mlflow_client(mlflow_server_url):
    mlflow.set_tracking_uri(mlflow_server_url)
    return mlflow.MlflowClient(mlflow_server_url)


@pytest.fixture(scope="module")
def experiment(mlflow_client):
    """An experiment of 12 runs logged with the stock mlflow client: params, metric histories, tags."""
    exp_id = mlflow_client.create_experiment(unique("ui"))
    runs = []
    for i in range(12):
        run = mlflow_client.create_run(exp_id, run_name=f"trial-{i:02d}", tags={"team": "a" if i % 2 else "b"})
        run_id = run.info.run_id
        metrics = [mlflow.entities.Metric("loss", 1.0 / (step + 1) + i / 100, 1_700_000_000_000 + step * 1000, step) for step in range(50)]
        mlflow_client.log_batch(
            run_id, metrics=metrics,
            params=[mlflow.entities.Param("model", "tree" if i % 3 == 0 else "mlp"), mlflow.entities.Param("seed", str(i))],
        )
        mlflow_client.set_terminated(run_id)
        runs.append(run_id)
    mlflow_client.set_tag(runs[0], "mlflow.note.content", "Baseline: the first trial.")
    return {"id": exp_id, "runs": runs}


def ingest(grpc_uri: str, run_id: str, series: list[pb.MetricSeries]) -> None:
    MlgridClient(grpc_uri).ingest([pb.IngestBatch(batch_id=uuid.uuid4().hex, run_id=run_id, metrics=series)])


def bulk_interval_points(responses) -> list[dict]:
    return [m for response in responses for m in response.json().get("metrics", [])]


def test_experiments_list_and_runs_table(page, experiment, screenshot):
    page.goto("/")
    page.wait_for_selector(f"tr[data-experiment-id='{experiment['id']}']")
    screenshot("experiments")
    page.click(f"tr[data-experiment-id='{experiment['id']}'] a")
    page.wait_for_selector("tr[data-run-id]")
    assert page.locator("tr[data-run-id]").count() == 12
    assert page.inner_text(".run-count") == "12 runs"
    # Default columns: the metrics and params the runs have.
    headers = page.locator("table.runs thead th").all_inner_texts()
    assert any("loss" in h for h in headers) and any("model" in h for h in headers)
    screenshot("runs")


def test_filter_box_filters_with_mlflow_grammar(page, experiment, screenshot):
    page.goto(f"/#/experiments/{experiment['id']}")
    page.wait_for_selector("tr[data-run-id]")
    page.fill("input[name=filter]", "params.model = 'tree' and metrics.loss < 0.1")
    page.press("input[name=filter]", "Enter")
    page.wait_for_function("document.querySelector('.run-count').textContent === '3 runs'")
    names = page.locator("tr[data-run-id] td:nth-child(2)").all_inner_texts()
    assert sorted(names) == ["trial-00", "trial-03", "trial-06"]
    assert "filter=" in page.evaluate("location.hash")
    screenshot("filtered")
    page.fill("input[name=filter]", "params.model = ")
    page.press("input[name=filter]", "Enter")
    page.wait_for_selector(".error")
    assert "INVALID_PARAMETER_VALUE" in page.inner_text(".error")


def test_sorting_sorts_on_the_server(page, experiment):
    page.goto(f"/#/experiments/{experiment['id']}")
    page.wait_for_selector("tr[data-run-id]")
    header = page.locator("th[data-sort='metrics.`loss`']")
    column = page.locator("table.runs thead th").all_inner_texts().index(header.inner_text()) + 1

    def losses():
        return [float(x) for x in page.locator(f"tr[data-run-id] td:nth-child({column})").all_inner_texts()]

    header.click()
    page.wait_for_selector("th.sorted.desc[data-sort='metrics.`loss`']")
    page.wait_for_function("document.querySelectorAll('tr[data-run-id]').length === 12")
    assert losses() == sorted(losses(), reverse=True) and losses()[0] > losses()[-1]
    page.locator("th[data-sort='metrics.`loss`']").click()
    page.wait_for_selector("th.sorted.asc[data-sort='metrics.`loss`']")
    page.wait_for_function("document.querySelectorAll('tr[data-run-id]').length === 12")
    assert losses() == sorted(losses())


def test_run_page_and_its_chart(page, experiment, screenshot):
    run_id = experiment["runs"][0]
    page.goto(f"/#/runs/{run_id}")
    page.wait_for_selector(".notes")
    assert "Baseline: the first trial." in page.inner_text(".notes")
    assert "tree" in page.inner_text(".overview") and "trial-00" in page.inner_text("h2")
    screenshot("overview")
    page.click("nav.tabs a:has-text('Charts')")
    card = page.wait_for_selector(".chart-card[data-key=loss][data-state=drawn]")
    assert card.get_attribute("data-points") == "50"
    assert page.evaluate(DRAWN_PIXELS, card) > 500
    screenshot("chart")


def test_million_point_history_is_drawn_from_a_bounded_downsampled_fetch(page, mlflow_client, server, screenshot):
    run_id = mlflow_client.create_run(mlflow_client.create_experiment(unique("ui-big"))).info.run_id
    steps = np.arange(1_000_000, dtype=np.int64)
    values = np.sin(steps / 50_000.0)
    values[SPIKE_STEP] = SPIKE
    ingest(server["uri"], run_id, [
        pb.MetricSeries(key="loss", steps=steps[i:i + 250_000], timestamps=steps[i:i + 250_000] + 1_700_000_000_000,
                        values=values[i:i + 250_000])
        for i in range(0, len(steps), 250_000)
    ])
    with page.expect_response(lambda r: BULK_INTERVAL in r.url) as first:
        page.goto(f"/#/runs/{run_id}?tab=charts")
        card = page.wait_for_selector(".chart-card[data-key=loss][data-state=drawn]")
    points = bulk_interval_points([first.value])
    assert 100 < len(points) <= 2500, f"{len(points)} points fetched for a 1,000,000-point history"
    assert {"step": SPIKE_STEP, "value": SPIKE} in [{"step": p.get("step", 0), "value": p.get("value", 0)} for p in points]
    assert float(card.get_attribute("data-max")) == SPIKE
    assert page.evaluate(DRAWN_PIXELS, card) > 500
    screenshot("million")

    # Zoom: drag across the chart; the range comes back from the server, within its steps.
    over = page.locator(".chart-card[data-key=loss] .u-over").bounding_box()
    y = over["y"] + over["height"] / 2
    with page.expect_response(lambda r: BULK_INTERVAL in r.url and "start_step" in r.url) as zoomed:
        page.mouse.move(over["x"] + over["width"] * 0.60, y)
        page.mouse.down()
        page.mouse.move(over["x"] + over["width"] * 0.62, y, steps=4)
        page.mouse.up()
    zoom_points = bulk_interval_points([zoomed.value])
    zoom_steps = [p.get("step", 0) for p in zoom_points]
    assert zoom_points and 550_000 < min(zoom_steps) and max(zoom_steps) < 650_000
    page.wait_for_selector(".chart-card[data-key=loss] a.reset:not([hidden])")
    screenshot("zoomed")


def test_5000_metric_keys_open_with_only_the_cards_in_view_drawn(page, mlflow_client, server, screenshot):
    run_id = mlflow_client.create_run(mlflow_client.create_experiment(unique("ui-keys"))).info.run_id
    keys = [f"layer_{i:04d}/grad_norm" for i in range(5000)]
    ingest(server["uri"], run_id, [pb.MetricSeries(key=k, steps=[0, 1, 2], timestamps=[1, 2, 3], values=[3.0, 1.0, 2.0]) for k in keys])
    requests = []
    page.on("request", lambda r: BULK_INTERVAL in r.url and requests.append(r.url))
    started = time.perf_counter()
    page.goto(f"/#/runs/{run_id}?tab=charts")
    page.wait_for_selector(".chart-card[data-state=drawn]")
    print(f"first chart of 5,000 keys drawn after {time.perf_counter() - started:.2f}s")
    page.wait_for_timeout(500)
    stats = page.evaluate("window.mlgridCharts")
    cards = page.locator(".chart-card").count()
    drawn = page.locator(".chart-card[data-state=drawn]").count()
    assert "5000 of 5000 metrics" in page.inner_text(".charts .toolbar")
    assert cards < 200, f"{cards} chart cards in the page for 5,000 keys"
    assert 0 < drawn <= 24 and stats["live"] == drawn and len(requests) <= 30
    screenshot("keys-top")

    # Scrolling far down draws the cards there and lets go of those above.
    page.mouse.wheel(0, 20_000)
    page.wait_for_timeout(800)
    stats = page.evaluate("window.mlgridCharts")
    assert stats["created"] > drawn and stats["live"] <= 24
    assert page.locator(".chart-card[data-key='layer_0000/grad_norm']").get_attribute("data-state") == "placeholder"
    # The metric filter narrows the grid to the keys that match.
    page.fill("input[name=metric-filter]", "layer_4999/")
    page.wait_for_selector(".chart-card[data-key='layer_4999/grad_norm'][data-state=drawn]")
    assert page.locator(".chart-card").count() == 1
    screenshot("keys-filtered")


def test_artifact_browser_previews_text_and_images(page, mlflow_client, screenshot, tmp_path):
    from PIL import Image

    run_id = mlflow_client.create_run(mlflow_client.create_experiment(unique("ui-art"))).info.run_id
    mlflow_client.log_text(run_id, "hello from the artifact store", "notes/readme.txt")
    mlflow_client.log_dict(run_id, {"lr": 0.01, "layers": [64, 32]}, "config.json")
    Image.new("RGB", (80, 40), (200, 30, 30)).save(tmp_path / "red.png")
    mlflow_client.log_artifact(run_id, str(tmp_path / "red.png"), "images")
    page.goto(f"/#/runs/{run_id}?tab=artifacts")
    page.click("a.dir[data-path=notes]")
    page.click("a.file[data-path='notes/readme.txt']")
    assert page.wait_for_selector("pre.artifact-text").inner_text() == "hello from the artifact store"
    page.click("a.file[data-path='config.json']")
    page.wait_for_function("document.querySelector('pre.artifact-text')?.textContent.includes('\"layers\"')")
    page.click("a.dir[data-path=images]")
    page.click("a.file[data-path='images/red.png']")
    page.wait_for_function("document.querySelector('img.artifact-image')?.naturalWidth === 80")
    download = page.get_attribute(".preview-head a[download]", "href")
    assert download.endswith("images/red.png")
    screenshot("image")


def test_compare_view_highlights_a_differing_param(page, experiment, screenshot):
    first, second = experiment["runs"][0], experiment["runs"][1]
    page.goto(f"/#/experiments/{experiment['id']}")
    for run_id in (first, second):
        page.check(f"tr[data-run-id='{run_id}'] input[type=checkbox]")
    page.click("button:has-text('Compare (2)')")
    page.wait_for_selector(".compare tr[data-key=model]")
    assert "diff" in page.get_attribute(".compare tr[data-key=model]", "class")  # tree vs mlp
    assert "diff" in page.get_attribute(".compare tr[data-key=seed]", "class")
    page.wait_for_selector(".chart-card[data-key=loss][data-state=drawn]")
    screenshot("compare")
    page.check("input[name=only-diffs]")
    assert page.locator(".compare tr[data-key=model]").count() == 1


@pytest.mark.filterwarnings("ignore:.*transition_model_version_stage.*:FutureWarning")
def test_registry_pages_show_versions_and_aliases(page, mlflow_client, experiment, screenshot):
    name = unique("churn")
    source_run = experiment["runs"][2]
    mlflow_client.create_registered_model(name, tags={"owner": "ds"}, description="Predicts churn")
    for _ in range(2):
        mlflow_client.create_model_version(name, f"runs:/{source_run}/model", run_id=source_run)
    mlflow_client.set_registered_model_alias(name, "champion", "1")
    mlflow_client.transition_model_version_stage(name, "2", "Staging")
    page.goto("/#/models")
    page.fill("input[name=model-filter]", name)
    page.press("input[name=model-filter]", "Enter")
    page.wait_for_selector(f"a:text-is('{name}')")
    screenshot("models")
    page.click(f"a:text-is('{name}')")
    page.wait_for_selector("tr[data-version='1']")
    assert "@champion" in page.inner_text("tr[data-version='1']")
    assert "Staging" in page.inner_text("tr[data-version='2']")
    assert "owner: ds" in page.inner_text(".model") and "Predicts churn" in page.inner_text(".model")
    screenshot("model")
    page.click("tr[data-version='1'] td:nth-child(5) a")
    page.wait_for_selector(".notes")
    assert source_run in page.evaluate("location.hash")


def test_runs_table_pages_as_it_scrolls_and_renders_only_rows_in_view(page, server, screenshot):
    client = MlgridClient(server["uri"])
    exp_id = client.create_experiment(unique("ui-many"))
    for i in range(1100):
        client.create_run(exp_id, run_name=f"r{i:04d}", start_time=1_700_000_000_000 + i)
    page.goto(f"/#/experiments/{exp_id}")
    page.wait_for_selector("tr[data-run-id]")
    assert page.inner_text(".run-count") == "500+ runs"
    assert page.locator("tr[data-run-id]").count() < 80
    assert page.locator("tr[data-run-id] td:nth-child(2)").first.inner_text() == "r1099"  # newest first
    for expected in ("1000+ runs", "1100 runs"):
        page.locator(".table-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")
        page.wait_for_function(f"document.querySelector('.run-count').textContent === '{expected}'")
    page.locator(".table-scroll").evaluate("el => { el.scrollTop = el.scrollHeight; }")
    page.wait_for_selector("tr[data-run-id] >> text=r0000")
    assert page.locator("tr[data-run-id]").count() < 80
    screenshot("bottom")
