"""Lazy public names for the domain packages (``library``, ``engine``, ``store``, ``duplicates``).

``from navembed_pipeline.lib.store import VectorStore`` imports only the module that defines
``VectorStore``: a light caller (the API at import time, a decode worker process, the Milvus Lite
server process) never pays for a heavy sibling (torch, pymilvus) it does not use, and a package's
``__init__`` cannot create an import circle.
"""

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: each public name → ``"module"`` (under ``package``)
    that defines it, or ``"module:attribute"`` where the public name differs from the module's own."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = where[name].partition(":")
        value = getattr(import_module(f"{package}.{module}"), attribute or name)
        setattr(sys.modules[package], name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__
