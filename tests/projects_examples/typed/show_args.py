"""Print the arguments and the run's environment as one JSON line, for the tests to read."""
import json
import os
import sys

print(json.dumps({
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "env": {k: v for k, v in os.environ.items() if k.startswith(("MLGRID_", "MLFLOW_"))},
}))
