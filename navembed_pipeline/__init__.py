"""navembed pipeline: Dagster assets that embed a Navidrome library into Milvus."""
