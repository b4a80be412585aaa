"""``vitrine users``: the accounts of a multi-user server, for its admin.

    vitrine users add NAME [--admin] [--password-stdin]     (the password is prompted otherwise)
    vitrine users list [--json]
    vitrine users disable NAME  |  vitrine users enable NAME
    vitrine users reset-token NAME [--expires 30d] [--name cli]
    vitrine users passwd NAME [--password-stdin]

The database is the server's: ``VITRINE_DATABASE_URL`` when set, else ``<workspace>/.vitrine/server.db``
with the workspace given by ``--workspace`` (the folder ``vitrine serve`` is given), ``VITRINE_HOME``
or the current folder. ``reset-token`` revokes the user's tokens and prints a new one, once.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vitrine.cli._console import err, fail, out

users_app = typer.Typer(help="Accounts of a multi-user server (`vitrine serve --multi-user`).", no_args_is_help=True)

Workspace = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", help="the folder `vitrine serve` serves (default: VITRINE_HOME or here)"),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar="VITRINE_DATABASE_URL", help="the server database (SQLAlchemy URL)"),
]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="read the password from the first line of stdin")]


def _store(workspace: Path | None, database_url: str | None):
    from vitrine.auth.service import AuthStore
    from vitrine.store.db import open_database

    return AuthStore(open_database(database_url, root=workspace, shared=False))


def _guarded(fn):
    """Run ``fn``; a VitrineError is a message (and hint) on stderr and exit status 2."""
    from vitrine.core.errors import VitrineError

    try:
        return fn()
    except VitrineError as exc:
        fail(exc)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else "-"


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the user name (letters, digits, . _ @ -)")],
    admin: Annotated[bool, typer.Option("--admin", help="make an admin (sees and manages everything)")] = False,
    password_stdin: PasswordStdin = False,
    workspace: Workspace = None,
    database_url: DatabaseUrl = None,
):
    """Create an account (member, or admin with --admin)."""
    from vitrine.auth.service import check_user_name

    _guarded(lambda: check_user_name(name))
    password = _read_password(password_stdin)

    def work():
        store = _store(workspace, database_url)
        try:
            return store.add_user(name, password, role="admin" if admin else "member")
        finally:
            store.engine.dispose()

    user = _guarded(work)
    out.print(f"added {user.role} [bold]{user.name}[/]", highlight=False)


@users_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="print machine-readable JSON on stdout")] = False,
    workspace: Workspace = None,
    database_url: DatabaseUrl = None,
):
    """The accounts, with their role, state and active tokens."""

    def work():
        store = _store(workspace, database_url)
        try:
            return [(u, [t for t in store.list_tokens(u.name) if t.active]) for u in store.list_users()]
        finally:
            store.engine.dispose()

    rows = _guarded(work)
    if as_json:
        data = [{**u.to_dict(), "active_tokens": len(toks)} for u, toks in rows]
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    if not rows:
        out.print("no users yet: add an admin with `vitrine users add NAME --admin`")
        return
    table = Table("name", "role", "state", "active tokens", "created")
    for u, toks in rows:
        table.add_row(u.name, u.role, "disabled" if u.disabled else "enabled", str(len(toks)), _when(u.created_at))
    out.print(table)


def _set_disabled(name: str, disabled: bool, workspace: Path | None, database_url: str | None) -> None:
    def work():
        store = _store(workspace, database_url)
        try:
            return store.set_disabled(name, disabled)
        finally:
            store.engine.dispose()

    user = _guarded(work)
    out.print(f"{user.name} is {'disabled (signed out everywhere)' if user.disabled else 'enabled'}", highlight=False)


@users_app.command("disable")
def disable(name: str, workspace: Workspace = None, database_url: DatabaseUrl = None):
    """Disable an account: its sessions end and its tokens stop working (kept for enable)."""
    _set_disabled(name, True, workspace, database_url)


@users_app.command("enable")
def enable(name: str, workspace: Workspace = None, database_url: DatabaseUrl = None):
    """Enable a disabled account again."""
    _set_disabled(name, False, workspace, database_url)


@users_app.command("reset-token")
def reset_token(
    name: str,
    expires: Annotated[str | None, typer.Option(help="lifetime, e.g. 30d, 12h, 2w (default: never expires)")] = None,
    token_name: Annotated[str, typer.Option("--name", help="a label for the token")] = "cli",
    workspace: Workspace = None,
    database_url: DatabaseUrl = None,
):
    """Revoke the user's API tokens and print a new one (shown this once: it is stored hashed)."""
    from vitrine.auth.tokens import parse_duration

    lifetime = _guarded(lambda: parse_duration(expires)) if expires else None

    def work():
        store = _store(workspace, database_url)
        try:
            revoked = store.revoke_all_tokens(name)
            info, secret = store.create_token(name, token_name, expires_in=lifetime)
            return revoked, info, secret
        finally:
            store.engine.dispose()

    revoked, info, secret = _guarded(work)
    err.print(
        f"revoked {revoked} token(s) of {name}; new token {info.prefix!r}"
        + (f", expires {_when(info.expires_at)}" if info.expires_at else ", never expires")
        + " (copy it now: it is not shown again)",
        highlight=False,
        soft_wrap=True,
    )
    sys.stdout.write(secret + "\n")


@users_app.command("passwd")
def passwd(
    name: str, password_stdin: PasswordStdin = False, workspace: Workspace = None, database_url: DatabaseUrl = None
):
    """Set a user's password (their sessions end)."""
    password = _read_password(password_stdin)

    def work():
        store = _store(workspace, database_url)
        try:
            store.set_password(name, password)
        finally:
            store.engine.dispose()

    _guarded(work)
    out.print(f"password of {name} changed", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``vitrine users …`` to the main `vitrine` app."""
    app.add_typer(users_app, name="users")


@users_app.command("quota")
def quota(
    name: str,
    size: Annotated[
        str | None,
        typer.Argument(help="the new limit, e.g. 500MB, 2GB, 'unlimited', or 'default' (VITRINE_STORAGE_QUOTA_MB)"),
    ] = None,
    workspace: Workspace = None,
    database_url: DatabaseUrl = None,
):
    """Show a user's storage (owned datasets and runs, on disk) and limit, or set the limit."""
    from vitrine.auth.quota import QuotaService, human, parse_size
    from vitrine.core.workspace import Workspace as _Workspace

    limit = _guarded(lambda: parse_size(size)) if size and size.strip().lower() != "default" else None

    def work():
        store = _store(workspace, database_url)
        try:
            svc = QuotaService(store.engine, _Workspace(workspace).root)
            if size is not None and size.strip().lower() == "default":
                svc.clear_limit(name)
            elif size is not None:
                svc.set_limit(name, limit)
            return svc.usage(name, fresh=True)
        finally:
            store.engine.dispose()

    usage = _guarded(work)
    source = {"user": "set for this user", "server": "server default", "none": "no limit set"}[usage.source]
    sys.stdout.write(
        f"{name}: {human(usage.used_bytes)} used of {human(usage.limit_bytes)} ({source}) in "
        f"{len(usage.objects)} datasets and runs\n"
    )
