"""The API's settings: the pipeline's ``Settings`` plus where and how the API itself listens.

Environment names follow ``NAVEMBED_<AREA>_<NAME>``; the original system's names are honoured as
aliases (``NAVIDROME_RECOMMENDER_PORT``). Everything binds to loopback unless told otherwise.
"""

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator

from navembed_pipeline.lib.settings import Settings

LOOPBACK = "127.0.0.1"
DAGSTER_PREFIX = "/dagster"  # the API's path for the Dagster UI, and the webserver's own path prefix
DAGSTER_SOCKET_URL = "http://dagster" + DAGSTER_PREFIX  # the webserver's base URL over its unix socket


class ApiSettings(Settings):
    """Every knob of the API process (HTTP app, upload socket, Dagster connection)."""

    api_host: str = Field(LOOPBACK, description="Interface the HTTP API binds to.")
    api_port: int = Field(9002, ge=1, le=65535,
                          validation_alias=AliasChoices("NAVEMBED_API_PORT", "NAVIDROME_RECOMMENDER_PORT"),
                          description="Port of the HTTP API (the original recommender API's port).")
    api_max_request_bytes: int = Field(1 << 20, ge=1024, description="Largest HTTP request body accepted "
                                       "(larger ones get 413).")
    admin_token: SecretStr | None = Field(None, description="Bearer token for /batch/*; without one the "
                                          "control endpoints refuse to work instead of running open.")
    plugin_token: SecretStr | None = Field(None, description="Bearer token the Navidrome plugin must send to "
                                           "/api/* (its apiToken); empty = those routes need none.")
    socket_path: Path | None = Field(Path("/tmp/navidrome_embed.sock"),
                                     description="Unix socket of the upload endpoint; empty disables it.")
    upload_dir: Path | None = Field(None, description="Where Navidrome puts uploads; socket requests may "
                                    "name files here or under music_root, nowhere else.")
    socket_max_request_bytes: int = Field(1 << 20, ge=1024, description="Largest socket request accepted.")
    socket_idle_timeout_seconds: float = Field(30.0, gt=0, description="Close a socket client that sends "
                                               "nothing for this long.")
    socket_workers: int = Field(2, ge=1, description="Upload requests embedded at once; more clients wait.")
    rename_timeout_seconds: float = Field(30.0, gt=0, description="Timeout of one OpenAI-compatible "
                                          "rename call; on timeout the upload keeps its name.")
    dagster_host: str = Field(LOOPBACK, description="Interface the Dagster webserver binds to (navembed up).")
    dagster_port: int = Field(3000, ge=1, le=65535, description="Port of the Dagster webserver (navembed up).")
    dagster_url: str = Field("", description="GraphQL base URL of a running Dagster webserver; "
                             "empty = http://<dagster_host>:<dagster_port>.")
    health_min_free_mb: int = Field(512, ge=0, description="/health reports degraded when the data dir's disk "
                                    "has less free space than this (MB).")
    vector_cache_stale_seconds: float = Field(600.0, gt=0, description="/health reports degraded when a vector "
                                              "cache's checks against the store have failed for longer than this "
                                              "(it keeps serving its last copy meanwhile).")
    dagster_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of one GraphQL call.")
    dagster_socket: Path | None = Field(None, description="Unix socket of the Dagster webserver (`navembed up` "
                                        "sets it): the API reaches Dagster through it and serves the Dagster "
                                        "UI and GraphQL at /dagster, behind the admin token.")

    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("NAVEMBED_OPENAI_API_KEY", "NAVIDROME_OPENAI_API_KEY", "OPENAI_API_KEY"),
        description="Bearer token for the OpenAI-compatible rename endpoint, if it needs one.")

    @field_validator("socket_path", "upload_dir", "dagster_socket", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def dagster_base_url(self) -> str:
        if self.dagster_socket is not None:
            return DAGSTER_SOCKET_URL
        return (self.dagster_url or f"http://{self.dagster_host}:{self.dagster_port}").rstrip("/")

    @property
    def dagster_public_url(self) -> str:
        """Where a browser reaches the Dagster UI: through this API when the webserver is on a socket."""
        if self.dagster_socket is not None:
            host = LOOPBACK if self.api_host in ("0.0.0.0", "::", "") else self.api_host  # a wildcard is no address
            return f"http://{host}:{self.api_port}{DAGSTER_PREFIX}"
        return self.dagster_base_url

    @property
    def admin_token_value(self) -> str | None:
        token = self.admin_token.get_secret_value().strip() if self.admin_token else ""
        return token or None

    @property
    def plugin_token_value(self) -> str | None:
        token = self.plugin_token.get_secret_value().strip() if self.plugin_token else ""
        return token or None

    @property
    def allowed_roots(self) -> tuple[Path, ...]:
        """Directories socket requests may read from (resolved)."""
        return tuple(p.expanduser().resolve() for p in (self.music_root, self.upload_dir) if p)
