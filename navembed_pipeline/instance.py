"""The Dagster instance: DAGSTER_HOME under the data dir, seeded with navembed's dagster.yaml.

Two flavours of one file: the embedded default (SQLite storage under $DAGSTER_HOME) and the
scale-out one (runs, event log and schedules in PostgreSQL, URL from ``DAGSTER_POSTGRES_URL``),
chosen by the ``dagster_postgres_url`` setting. ``deploy/dagster-postgres.yaml`` is the second
flavour, written out for machines that run Dagster without navembed's CLI (a test keeps them equal).
"""

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import dagster as dg

TEMPLATE = resources.files("navembed_pipeline").joinpath("dagster.yaml")
POSTGRES_URL_ENV = "DAGSTER_POSTGRES_URL"
# dagster.yaml files earlier navembed versions wrote (SHA-256): replaced by the current one on start.
EARLIER_TEMPLATES = frozenset({"0c5890f07fe00f1fbc3830f9d49e9be533a44598bf09393145b96ccabeb24d9e",
                               "496a5c86441d9ecf0ddc39e8d6657f6ecffaf74d92aa0351d8edc15d509a74f9",
                               "9a6cc5bf9b81e9069b10083e3f9eb2d158d4fa6c6e76ec089d3c021eafa55bf5",
                               "c7adb19c8300e0b29c78c31d8b012927d38b66aacbaf8d17546ca4d1d8a68d95",
                               "91c35094dafe3bea891380659b0fbbcf9cd841642a303b807e175a5e7dc4c8e4",
                               "44c2103343c326429c16fa93f0015c4d2fead42a3131ee73cc17f7a6cc55618c"})
SQLITE_ONLY_MARKER = "# --- SQLite only"
# Dagster hands a run's per-partition "planned" events to the storage as one batch only when this is
# set; our SQLite event log (event_log.py) then writes them in one transaction (256 buckets: ~17 s → ~2 s).
EVENT_BATCH_SIZE_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}
POSTGRES_HEADER = """\
# Dagster instance on PostgreSQL (runs, event log, schedules) — the scale-out path. Written by navembed
# (navembed_pipeline/instance.py) when NAVEMBED_DAGSTER_POSTGRES_URL / DAGSTER_POSTGRES_URL is set; copy
# it to $DAGSTER_HOME/dagster.yaml on every machine that runs the webserver, daemon or run workers.
# DAGSTER_POSTGRES_URL must use the psycopg2 scheme with SQLAlchemy 2.1, for example
#   postgresql+psycopg2://dagster:secret@db.lan:5432/dagster
"""
POSTGRES_STORAGE = f"""\
storage:
  postgres:
    postgres_url:
      env: {POSTGRES_URL_ENV}
"""


def instance_yaml(*, postgres: bool) -> str:
    """navembed's dagster.yaml: the embedded one, or the same with its storage in PostgreSQL."""
    text = TEMPLATE.read_text()
    if not postgres:
        return text
    common = text.split(SQLITE_ONLY_MARKER)[0]  # the SQLite event log storage does not apply
    body = "\n".join(line for line in common.splitlines() if not line.startswith("#"))
    return f"{POSTGRES_HEADER}{POSTGRES_STORAGE}{body.strip()}\n"


def prepare_dagster_home(home: Path, *, postgres: bool = False) -> Path:
    """Create ``home`` with navembed's dagster.yaml (``postgres``: the PostgreSQL flavour).

    A dagster.yaml navembed wrote (this version's or an earlier one's) is switched to the flavour
    asked for; anyone else's is kept.
    """
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or _written_by_navembed(config.read_text()):
        config.write_text(instance_yaml(postgres=postgres))
    return home


def _written_by_navembed(text: str) -> bool:
    ours = {instance_yaml(postgres=False), instance_yaml(postgres=True)}
    return text in ours or hashlib.sha256(text.encode()).hexdigest() in EARLIER_TEMPLATES


def instance_env(home: Path, postgres_url: str | None = None) -> dict[str, str]:
    """The environment Dagster processes of this instance need (``DAGSTER_HOME``, the Postgres URL)."""
    env = {"DAGSTER_HOME": str(Path(home).resolve()), **EVENT_BATCH_SIZE_ENV}
    if postgres_url:
        env[POSTGRES_URL_ENV] = postgres_url
    return env


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block (Dagster reads its config's ``env:`` entries there)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def open_instance(home: Path, *, postgres_url: str | None = None) -> dg.DagsterInstance:
    """The instance stored in ``home`` (its environment also exported for child processes)."""
    home = prepare_dagster_home(home, postgres=bool(postgres_url))
    os.environ.update(instance_env(home, postgres_url))
    return dg.DagsterInstance.get()

