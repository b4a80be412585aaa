"""The ``vitrine`` command line (Typer + Rich). Every command that prints results takes --json.

This module only assembles: it creates the app and adds the command groups, one module each
(:mod:`~vitrine.cli.project`, :mod:`~vitrine.cli.data`, :mod:`~vitrine.cli.train`,
:mod:`~vitrine.cli.evaluate`, :mod:`~vitrine.cli.runs`, :mod:`~vitrine.cli.sweep`,
:mod:`~vitrine.cli.predict`, :mod:`~vitrine.cli.detect`, :mod:`~vitrine.cli.jobs`,
:mod:`~vitrine.cli.users`, :mod:`~vitrine.cli.curate`). They share :mod:`vitrine.cli._console`
(consoles, --json, errors, progress), :mod:`vitrine.cli._inputs` (image files, detectors) and
:mod:`vitrine.cli._runs` (run formatting, the training progress bar), and never import this
module nor each other.
"""

from __future__ import annotations

import typer

from vitrine.cli import (
    curate,
    data,
    detect,
    embeddings,
    evaluate,
    export_model,
    jobs,
    leaderboard,
    predict,
    project,
    runs,
    submit,
    sweep,
    train,
    users,
)

app = typer.Typer(
    help="vitrine: index, search and explore image collections with deep vision models, offline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# the order of `vitrine --help`: project commands first, then the other groups
for _group in (project, curate, data, train, evaluate, runs, leaderboard, submit, sweep, predict, detect, users, jobs):
    _group.register(app)
export_model.register(app)  # export-model (:mod:`~vitrine.cli.export_model`)
embeddings.register(app)  # compare-embeddings (:mod:`~vitrine.cli.embeddings`)


def main():  # pragma: no cover
    app()
