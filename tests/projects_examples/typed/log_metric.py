"""Log a metric to the project's run with mlgrid's fluent API (MLGRID_RUN_ID names the run)."""
import sys

import mlgrid

with mlgrid.start_run():  # attaches to MLGRID_RUN_ID, as mlflow to MLFLOW_RUN_ID
    mlgrid.log_metric("value", float(sys.argv[1]))
    mlgrid.set_tag("logged_by", "log_metric.py")
