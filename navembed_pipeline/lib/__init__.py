"""Plain-Python core (never imports dagster): usable by the pipeline and the API alike."""
