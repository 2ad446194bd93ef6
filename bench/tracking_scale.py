"""Tracking at scale on PostgreSQL; prints one JSON object.

    .venv/bin/python bench/tracking_scale.py [--database-url URL] [--quick]

Seeds a fresh database in bulk (server-side INSERT ... SELECT over generate_series),
starts `python -m services.tracking` on it and measures through the mlgrid client:
- search by tag across all experiments, 1,000,000 runs in 10,000 experiments;
- reading back all 30,000 runs of one experiment, 100 params, metrics and tags each;
- search in an experiment whose runs carry 50,000 dataset inputs.
"""
import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import asyncpg  # noqa: E402
from _harness import _plain, fresh_database, latencies_ms, start_tracking  # noqa: E402

import mlgrid  # noqa: E402
from services.db import run_data_fields  # noqa: E402

T0 = 1_700_000_000_000


async def seed(db_url: str, runs_total: int, experiments: int, wide_runs: int, input_runs: int, inputs_per_run: int) -> dict:
    """Returns the experiment ids of the wide and the inputs experiments."""
    conn = await asyncpg.connect(_plain(db_url))
    timings = {}
    try:
        started = time.perf_counter()
        await conn.execute(
            """INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
               SELECT e, 'scale-' || e, 'mlgrid-artifacts:/' || e, 'active', $1::bigint, $1::bigint FROM generate_series(1, $2) e""",
            T0, experiments,
        )
        # Runs spread over the experiments; run ids are md5 hex (32 chars) as uuid4().hex would be.
        await conn.execute(
            """INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, lifecycle_stage, artifact_uri)
               SELECT md5('run' || i), 'run-' || i, 1 + i % $2, 'bench', 'FINISHED', $3::bigint + i, 'active', 'mlgrid-artifacts:/x'
               FROM generate_series(0, $1 - 1) i""",
            runs_total, experiments, T0,
        )
        teams = list("abcdefghij")
        await conn.execute(
            """INSERT INTO tags (run_uuid, key, value, encoded)
               SELECT md5('run' || i), 'team', ($2::text[])[1 + i % 10], ($3::bytea[])[1 + i % 10]
               FROM generate_series(0, $1 - 1) i""",
            runs_total, teams, [run_data_fields.tag("team", t) for t in teams],
        )
        timings["seed_runs_s"] = round(time.perf_counter() - started, 1)

        started = time.perf_counter()
        wide_exp, inputs_exp = experiments + 1, experiments + 2
        await conn.execute(
            """INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time)
               VALUES ($1, 'wide', 'mlgrid-artifacts:/wide', 'active', $3, $3), ($2, 'inputs', 'mlgrid-artifacts:/inputs', 'active', $3, $3)""",
            wide_exp, inputs_exp, T0,
        )
        await conn.execute(
            """INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, lifecycle_stage, artifact_uri)
               SELECT md5('wide' || i), 'wide-' || i, $2, 'bench', 'FINISHED', $3::bigint + i, 'active', 'mlgrid-artifacts:/w'
               FROM generate_series(0, $1 - 1) i""",
            wide_runs, wide_exp, T0,
        )
        # The same 100 keys and values in every run, so their encodings are made once here.
        for table, encode, value in (("params", run_data_fields.param, "value-"), ("tags", run_data_fields.tag, "tag-value-")):
            keys, values = [f"{table[0]}{k}" for k in range(100)], [f"{value}{k}" for k in range(100)]
            await conn.execute(
                f"""INSERT INTO {table} (run_uuid, key, value, encoded)
                    SELECT md5('wide' || i), e.* FROM generate_series(0, $1 - 1) i,
                    unnest($2::text[], $3::text[], $4::bytea[]) e""",
                wide_runs, keys, values, [encode(k, v) for k, v in zip(keys, values)],
            )
        keys, values = [f"m{k}" for k in range(100)], [k / 100 for k in range(100)]
        await conn.execute(
            """INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step, encoded)
               SELECT md5('wide' || i), e.key, e.value, false, $4::bigint, 100, e.encoded FROM generate_series(0, $1 - 1) i,
               unnest($2::text[], $3::float8[], $5::bytea[]) e(key, value, encoded)""",
            wide_runs, keys, values, T0, [run_data_fields.metric(k, v, T0, 100) for k, v in zip(keys, values)],
        )
        timings["seed_wide_s"] = round(time.perf_counter() - started, 1)

        started = time.perf_counter()
        await conn.execute(
            """INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, start_time, lifecycle_stage, artifact_uri)
               SELECT md5('inp' || i), 'inp-' || i, $2, 'bench', 'FINISHED', $3::bigint + i, 'active', 'mlgrid-artifacts:/i'
               FROM generate_series(0, $1 - 1) i""",
            input_runs, inputs_exp, T0,
        )
        await conn.execute(
            """INSERT INTO datasets (dataset_uuid, experiment_id, name, digest, source_type, source, schema, profile)
               SELECT md5('ds' || d), $2, 'dataset-' || d, left(md5('dg' || d), 8), 'local', '/data/' || d,
                      '{"mlflow_colspec": [{"name": "x", "type": "double"}]}', '{"num_rows": 1000}'
               FROM generate_series(0, $1 - 1) d""",
            input_runs * inputs_per_run, inputs_exp,
        )
        await conn.execute(
            """INSERT INTO run_inputs (run_uuid, dataset_uuid)
               SELECT md5('inp' || (d / $2)), md5('ds' || d) FROM generate_series(0, $1 - 1) d""",
            input_runs * inputs_per_run, inputs_per_run,
        )
        await conn.execute(
            """INSERT INTO run_input_tags (run_uuid, dataset_uuid, key, value)
               SELECT md5('inp' || (d / $2)), md5('ds' || d), 'mlflow.data.context', 'training'
               FROM generate_series(0, $1 - 1) d""",
            input_runs * inputs_per_run, inputs_per_run,
        )
        timings["seed_inputs_s"] = round(time.perf_counter() - started, 1)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return {"wide_experiment": str(wide_exp), "inputs_experiment": str(inputs_exp), **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes, for a smoke run")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1
    sizes = {
        "runs_total": int(1_000_000 * scale),
        "experiments": int(10_000 * scale),
        "wide_runs": int(30_000 * scale),
        "input_runs": int(1000 * scale),
        "inputs_per_run": 50,
    }

    with fresh_database(args.database_url) as db_url:
        seeded = asyncio.run(seed(db_url, **sizes))
        with start_tracking(db_url) as uri:
            client = mlgrid.MlgridClient(uri)
            results = {"backend": "postgresql", "sizes": sizes, "seeding": seeded}

            def by_tag():
                found = client.search_runs([], "tags.team = 'a'", max_results=100)
                assert len(found) == 100 and all(r.data.tags["team"] == "a" for r in found)

            results["search_by_tag_all_experiments"] = {
                "runs": sizes["runs_total"], "experiments": sizes["experiments"], **latencies_ms(by_tag, 20)
            }

            started = time.perf_counter()
            count = 0
            for run in client.iter_runs([seeded["wide_experiment"]], page_size=1000):
                assert len(run.data.params) == 100 and len(run.data.metrics) == 100 and len(run.data.tags) == 100
                count += 1
            assert count == sizes["wide_runs"]
            results["read_wide_experiment"] = {
                "runs": count, "params_metrics_tags_each": 100, "seconds": round(time.perf_counter() - started, 2)
            }

            def with_inputs():
                found = client.search_runs([seeded["inputs_experiment"]], "", max_results=100)
                assert len(found) == 100 and len(found[0].inputs.dataset_inputs) == sizes["inputs_per_run"]

            results["search_with_dataset_inputs"] = {
                "dataset_inputs": sizes["input_runs"] * sizes["inputs_per_run"], **latencies_ms(with_inputs, 20)
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
