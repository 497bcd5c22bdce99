"""The embedded Dagster instance: DAGSTER_HOME under the data dir, seeded with our dagster.yaml."""

import os
import shutil
from importlib import resources
from pathlib import Path

import dagster as dg

TEMPLATE = resources.files("navembed_pipeline").joinpath("dagster.yaml")


def prepare_dagster_home(home: Path) -> Path:
    """Create ``home`` with navembed's dagster.yaml unless one is there (a user's own is kept)."""
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        with resources.as_file(TEMPLATE) as template:
            shutil.copyfile(template, config)
    return home


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance stored in ``home`` (also exported as DAGSTER_HOME for child processes)."""
    home = prepare_dagster_home(home)
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()
