"""What a person runs: the `navembed` command line and what only it drives.

- ``commands``: the parser and ``main`` (the console script's target, ``navembed_pipeline.cli:main``);
- ``run_commands`` / ``stack_commands``: `navembed reembed` and `navembed demo` / `navembed up`,
  `navembed api`, `navembed milvus serve`;
- ``local_run``: one re-embed run in this process with a progress bar; ``fanout`` + ``fanout_worker``:
  the same over N worker processes (`--workers N`);
- ``demo``: `navembed demo`, the whole product on the generated sample library.

The long-running processes themselves are in ``navembed_pipeline.stack``.
"""

from navembed_pipeline.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
