"""Run one embedding job in a separate process (so a test can kill -9 it mid-run).

usage: python -m tests.pipeline.run_embed DB_PATH MILVUS_URI DAGSTER_HOME [--clear-existing]
"""

import sys
from pathlib import Path

import dagster as dg

from navembed_pipeline.instance import open_instance
from navembed_pipeline.sample_data.sample_library import SampleLibrary
from tests.pipeline.helpers import embed

WRITE_BATCH = 4  # small writes, so a kill lands with most of the library still to do


def main(argv: list[str]) -> int:
    db_path, uri, home = argv[:3]
    library = SampleLibrary(Path(db_path).parent, Path(db_path), 0, "", Path(), Path(), (Path(), Path()))
    instance = open_instance(Path(home))
    result = embed(library, uri, instance, clear_existing="--clear-existing" in argv,
                   job_config={"batch_size": 1, "write_batch_tracks": WRITE_BATCH}, raise_on_error=False)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
