"""The Dagster webserver on a private unix socket: ``python -m navembed_pipeline.stack.dagster_serve --uds PATH ...``.

Dagster's open-source webserver has no authentication, and ``dagster-webserver`` listens on TCP only
(``--host``/``--port``): any local account reaching that port could launch and terminate runs. So
`navembed up` runs the very same webserver here, with the uvicorn it starts bound to a unix socket
inside an owner-only directory instead, and the API serves the UI and GraphQL behind the admin
token (``navembed_api.routes.dagster_ui``). Every other argument is dagster-webserver's own.
"""

import argparse
import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Run ``dagster-webserver <argv>`` with its uvicorn listening on ``--uds`` instead of a port."""
    parser = argparse.ArgumentParser(prog="python -m navembed_pipeline.stack.dagster_serve", add_help=False)
    parser.add_argument("--uds", required=True, help="unix socket path (its directory should be owner-only)")
    args, webserver_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)

    import uvicorn
    from dagster_webserver import cli

    run_on_port = uvicorn.run

    def run_on_socket(app: Any, **options: Any) -> None:
        run_on_port(app, uds=args.uds, log_level=options.get("log_level", "warning"))

    cli.uvicorn.run = run_on_socket  # the one call dagster-webserver makes to serve its app
    sys.argv = ["dagster-webserver", *webserver_args]
    cli.main()


if __name__ == "__main__":
    main()
