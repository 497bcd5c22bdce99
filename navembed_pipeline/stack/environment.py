"""The environment every part of the stack shares: settings as ``NAVEMBED_*``, the workspace, private paths."""

import os
from pathlib import Path

from pydantic import AliasChoices, SecretStr

from navembed_pipeline.lib.settings import Settings
from navembed_pipeline.lib.store import private_socket

WORKSPACE = """load_from:
  - python_module:
      module_name: navembed_pipeline.definitions
"""

def create_storage(home: Path) -> None:
    """Create the instance's storage now: the webserver and daemon would race to migrate a new one."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(home)):
        pass


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the environment variable it is read from (first alias, else NAVEMBED_<NAME>)."""
    env: dict[str, str] = {}
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if value is None and field.default is None:
            continue
        alias = field.validation_alias
        key = alias.choices[0] if isinstance(alias, AliasChoices) else (alias or f"NAVEMBED_{name.upper()}")
        env[str(key)] = "" if value is None else _env_value(value)  # "" = switched off (e.g. socket_path)
    return env


def _env_value(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value.expanduser().resolve())
    return str(value)


def private_socket_path(folder: Path, name: str) -> Path:
    """``folder/name`` in an owner-only folder (or, if too long for a socket path, a private temp dir)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return Path(private_socket(folder, name).removeprefix("unix:"))


