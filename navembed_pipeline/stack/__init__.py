"""The embedded stack behind `navembed up`: its parts as supervised child processes.

- ``stack``: ``Stack`` starts Milvus Lite, the Dagster webserver and daemon and the API in order,
  health-checks each and stops them in reverse order;
- ``supervisor``: restarts a part that died (with backoff) and re-launches the runs it broke;
- ``processes`` / ``environment``: child-process plumbing and the environment the parts share;
- ``dagster_serve``: the Dagster webserver on a private unix socket (a child's entry point);
- ``leftovers`` / ``guard`` / ``tether``: one instance per data dir, nothing left when it dies.

The names below load on first use: ``python -m navembed_pipeline.stack.tether`` (before every part)
and the guard must start in a blink, without Dagster.
"""

from importlib import import_module
from typing import Any

_HOMES = {"Stack": "stack", "StackUrls": "stack", "free_port": "processes", "port_in_use": "processes",
          "settings_env": "environment"}
__all__ = ["Stack", "StackUrls", "free_port", "port_in_use", "settings_env"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
