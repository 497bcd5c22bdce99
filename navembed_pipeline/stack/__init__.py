"""The embedded stack behind `navembed up`: its parts as supervised child processes.

- ``stack``: ``Stack`` starts Milvus Lite, the Dagster webserver and daemon and the API in order,
  health-checks each and stops them in reverse order;
- ``supervisor``: restarts a part that died (with backoff) and re-launches the runs it broke;
- ``processes`` / ``environment``: child-process plumbing and the environment the parts share;
- ``dagster_serve``: the Dagster webserver on a private unix socket (a child's entry point).
"""

from navembed_pipeline.stack.environment import settings_env
from navembed_pipeline.stack.processes import free_port, port_in_use
from navembed_pipeline.stack.stack import Stack, StackUrls

__all__ = ["Stack", "StackUrls", "free_port", "port_in_use", "settings_env"]
