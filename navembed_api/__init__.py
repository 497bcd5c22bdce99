"""navembed API: FastAPI shim over Dagster GraphQL, the upload socket, text search and recommendations."""
