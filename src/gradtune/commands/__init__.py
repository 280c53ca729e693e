"""The `gradtune` command: one thin module per command (parse arguments, call the API, print).
No logic of its own: what a command does is in the package it calls."""

from __future__ import annotations

# each module adds its command to the app; `gradtune --help` lists them in this order
# isort: off
from gradtune.commands import train, evaluate, predict, generate, export, serve, quickstart  # noqa: F401
from gradtune.commands import compare, sweep, lr_find, gradcheck, report, runs, plan  # noqa: F401
# isort: on
from gradtune.commands.app import app


def main() -> None:
    app(prog_name="gradtune")
