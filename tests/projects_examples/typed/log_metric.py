"""Log a metric to the project's run with mlgrid's fluent API (MLGRID_RUN_ID names the run)."""
import os
import sys

import mlgrid

with mlgrid.start_run(run_id=os.environ["MLGRID_RUN_ID"]):
    mlgrid.log_metric("value", float(sys.argv[1]))
    mlgrid.set_tag("logged_by", "log_metric.py")
