"""``python -m navembed_pipeline.cli``: the `navembed` command without the console script."""

import sys

from navembed_pipeline.cli.commands import main

sys.exit(main())
