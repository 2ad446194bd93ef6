"""The gateway: the single front door. gRPC routing by service name to the tracking, artifacts,
registry and serving backends (router.py, assembled in service.py)."""
