"""The gateway: the single front door. gRPC routing by service name to the tracking, artifacts,
registry and serving backends (router.py, assembled in service.py), and MLflow's REST API over the
same backends (rest.py, with its routes from the protos' annotations in rest_routes.py and its JSON
in mlflow_json.py)."""
