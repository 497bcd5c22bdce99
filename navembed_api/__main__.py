"""``python -m navembed_api``: serve the API with settings from the environment (what `navembed up` runs)."""

import logging

from navembed_api.main import serve
from navembed_api.settings import ApiSettings

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(ApiSettings())
