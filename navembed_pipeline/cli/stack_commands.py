"""`navembed up`, `navembed api` and `navembed milvus serve`: the long-running processes.

Registered into the CLI by ``navembed_pipeline.cli`` (``register_up``, ``register_api``,
``register_milvus``). Settings come from the environment (``NAVEMBED_*``); flags override them.
"""

import argparse
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def register_up(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "up", help="run everything: Milvus Lite, Dagster UI + daemon, the API and upload socket",
        description="Start the embedded stack on this machine (all on 127.0.0.1 unless configured): a "
                    "Milvus Lite server, the Dagster webserver and daemon (DAGSTER_HOME under the data "
                    "dir), and the API with the upload socket. Ctrl-C stops everything cleanly. "
                    "Configure with NAVEMBED_* variables (see README); flags override them.")
    _common_flags(cmd)
    cmd.add_argument("--dagster-port", type=int, help="Dagster UI port (default 3000)")
    cmd.add_argument("--no-api", action="store_true", help="start only Milvus and Dagster (the Dagster UI then "
                                                           "listens on 127.0.0.1 without authentication)")
    cmd.set_defaults(handler=_up)


def register_api(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("api", help="run only the API and the upload socket (foreground)",
                              description="Serve the HTTP API (default 127.0.0.1:9002, docs at /docs) and the "
                                          "upload socket; Dagster and Milvus must already run (`navembed up`).")
    _common_flags(cmd)
    cmd.set_defaults(handler=_api)


def register_milvus(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("milvus", help="the embedded Milvus Lite server",
                              description="Manage the Milvus Lite server every component connects to by URI.")
    sub = cmd.add_subparsers(title="actions", metavar="ACTION")
    serve = sub.add_parser("serve", help="run a Milvus Lite server in the foreground until Ctrl-C",
                           description="Serve <data-dir>/milvus on an owner-only unix socket (or 127.0.0.1 when "
                                       "asked); prints its URI.")
    serve.add_argument("--data-dir", type=Path, help="navembed data dir (default: NAVEMBED_DATA_DIR or ./var)")
    serve.add_argument("--host", help="private (default: an owner-only unix socket in the data dir), 127.0.0.1 "
                                      "or unix:/path/to.sock (no other hosts: Milvus Lite has no authentication)")
    serve.add_argument("--port", type=int, help="TCP port; implies --host 127.0.0.1 unless --host is given")
    serve.set_defaults(handler=_milvus_serve)


def _common_flags(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--data-dir", type=Path, help="where Milvus data, DAGSTER_HOME and logs live (default ./var)")
    cmd.add_argument("--host", help="API interface (default 127.0.0.1)")
    cmd.add_argument("--port", type=int, help="API port (default 9002 / NAVIDROME_RECOMMENDER_PORT)")


def _settings(args: argparse.Namespace) -> Any:
    from navembed_api.settings import ApiSettings

    overrides = {"data_dir": args.data_dir, "api_host": getattr(args, "host", None),
                 "api_port": getattr(args, "port", None), "dagster_port": getattr(args, "dagster_port", None)}
    return ApiSettings(**{k: v for k, v in overrides.items() if v is not None})


def _up(args: argparse.Namespace) -> int:
    from navembed_pipeline.stack import Stack

    settings = _settings(args)
    stack = Stack(settings, api=not args.no_api)
    print("navembed: starting Milvus Lite, Dagster and the API (first start takes a minute) ...", flush=True)
    with sigterm_as_interrupt():
        try:
            urls = stack.start()
            print("\n".join(["navembed is up:", *(f"  {line}" for line in urls.lines()),
                             "Ctrl-C stops everything."]), flush=True)
            if settings.admin_token_value is None and not args.no_api:
                print("  note: NAVEMBED_ADMIN_TOKEN is not set, so /batch/* and the Dagster UI refuse requests",
                      flush=True)
            died = stack.wait()  # supervises: a part that dies is restarted; this returns when one is given up
            print(f"navembed: {died} keeps failing; stopping the rest (see {stack.log_dir}/{died}.log and "
                  f"{stack.log_dir}/supervisor.log)", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nnavembed: stopping ...", flush=True)
            return 0
        finally:
            # A second Ctrl-C (or a supervisor's SIGTERM) must not abandon the children mid-stop;
            # stopping is bounded anyway (grace period, then kill).
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            stack.stop()


def _api(args: argparse.Namespace) -> int:
    from navembed_api.main import serve

    serve(_settings(args))
    return 0


def _milvus_serve(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.lib.store import MilvusLiteServer, running_uri

    settings = Settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    host = args.host or ("127.0.0.1" if args.port else settings.milvus_listen)
    server = MilvusLiteServer(settings.milvus_data_dir, host=host, port=args.port)
    with sigterm_as_interrupt():
        try:
            print(f"Milvus Lite serving {server.data_dir} at {server.start()} (Ctrl-C stops it)", flush=True)
            while running_uri(server.data_dir):
                time.sleep(2.0)
            print("navembed: the Milvus Lite server stopped unexpectedly; see "
                  f"{server.data_dir}/navembed-server.log", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 0
        finally:
            server.stop()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C, so `kill` and service managers get the same clean stop.

    SIGINT is set explicitly too: a process started in the background by a shell inherits an
    ignored SIGINT, and `kill -INT` must still stop it.
    """
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
