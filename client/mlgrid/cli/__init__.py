"""The `mlgrid` command line."""
