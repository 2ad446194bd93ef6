"""What the client commands share: the tracking URI option and how tables and times print."""
from __future__ import annotations

import datetime

import click

from mlgrid.client import TRACKING_URI_ENV

tracking_uri_option = click.option(
    "--tracking-uri", envvar=TRACKING_URI_ENV, default=None,
    help=f"Tracking server, grpc://host:port [env: {TRACKING_URI_ENV}; default grpc://127.0.0.1:50051].",
)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def format_time(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")
