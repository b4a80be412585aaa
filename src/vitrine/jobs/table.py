"""The ``jobs`` table of the server database (created by migration 0001, ``log_tail`` by 0002)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Integer, String, Table, Text, false

from vitrine.store.schema import metadata

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("owner", String(128), nullable=True, index=True),  # user id or name; None in single-user mode
    Column("target", String(512), nullable=False, server_default="", index=True),  # what it works on
    Column("params", JSON, nullable=False),  # everything needed to run it again
    Column("state", String(16), nullable=False, index=True),
    Column("stage", String(64), nullable=False, server_default=""),
    Column("done", BigInteger, nullable=False, server_default="0"),
    Column("total", BigInteger, nullable=False, server_default="0"),
    Column("info", JSON, nullable=True),  # the handler's progress details (epoch, loss, eta_seconds, checkpoint…)
    Column("message", Text, nullable=False, server_default=""),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("heartbeat_at", Float, nullable=True),
    Column("worker_id", String(160), nullable=True),  # host:pid:random of the process running it
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("log_tail", Text, nullable=False, server_default=""),  # last lines of its log, newline-separated
)
