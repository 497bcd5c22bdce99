"""The one settings object: environment (``NAVEMBED_*``, plus the original system's names) → code.

Read once where a process starts (Dagster definitions, the API's ``create_app``, the CLI) and
passed down; nothing else reads the environment.
"""

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from navembed_pipeline.lib.library.navidrome import parse_path_map
from navembed_pipeline.lib.models import DEEP_MODEL_NAMES, MODEL_NAMES, weights_repos
from navembed_pipeline.lib.errors import WeightsUnreadableError
from navembed_pipeline.lib.models.options import (
    DEFAULT_MUSICNN_VARIANT,
    MERT_LAYERS_PATTERN,
    MUSICNN_VARIANT_PATTERN,
    ModelOptions,
    model_extras,
)
from navembed_pipeline.lib.models.weights import weights_present


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every knob of the pipeline; the API extends it with its own."""

    model_config = SettingsConfigDict(env_prefix="NAVEMBED_", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(Path("var"), description="Where the embedded Milvus Lite data, Dagster home "
                           "and logs live.")
    navidrome_db: Path | None = Field(None, validation_alias=_env("NAVEMBED_NAVIDROME_DB", "NAVIDROME_DB_PATH"),
                                      description="Navidrome's navidrome.db (opened read-only).")
    music_root: Path | None = Field(None, validation_alias=_env("NAVEMBED_MUSIC_ROOT", "NAVIDROME_MUSIC_ROOT"),
                                    description="Root of the music files; request paths are confined to it.")
    path_map: str = Field("", description="Rewrite Navidrome's library paths as seen here, "
                          "'from=to;from2=to2' (e.g. '/music=/mnt/nas/music').")
    milvus_uri: str = Field("", validation_alias=_env("NAVEMBED_MILVUS_URI", "NAVIDROME_MILVUS_URI"),
                            description="Milvus URI; empty = the embedded Milvus Lite server under data_dir.")
    milvus_token: str = Field("", description="Milvus token (user:password) for a secured server.")
    milvus_listen: str = Field("private", description="Where the embedded Milvus Lite server listens: "
                               "'private' = an owner-only unix socket in the data dir; '127.0.0.1' = loopback "
                               "TCP, which every local account can reach (Milvus Lite has no authentication).")
    models: str = Field("auto", description="Comma-separated models to embed with; 'auto' = dsp plus every "
                        "deep model whose weights are present.")
    models_dir: Path | None = Field(None, description="Directory of downloaded weights "
                                    "(<org>--<name>/ per repo, musicnn-0.1.0/ for MusiCNN); unset = "
                                    "<data_dir>/models. The Hugging Face cache is used too.")
    models_device: str = Field("auto", validation_alias=_env("NAVEMBED_MODELS_DEVICE", "TEXT_EMBEDDING_DEVICE"),
                               description="auto | cuda | cpu.")
    models_dtype: str = Field("float32", description="float32 | float16 | bfloat16 (half precision on GPU only).")
    mert_layers: str = Field("mean", pattern=MERT_LAYERS_PATTERN,
                             description="MERT's vector: 'mean' = the mean of all 25 hidden states, enriched "
                             "(3,072-d); a list of hidden-state indices such as '6,12' (their mean, 3,072-d); "
                             "'all' = the original system's 76,800-d vector (embedded Milvus Lite only: Milvus "
                             "standalone caps vectors at 32,768-d). Changing it re-embeds mert.")
    musicnn_variant: str = Field(DEFAULT_MUSICNN_VARIANT, pattern=MUSICNN_VARIANT_PATTERN,
                                 description="MusiCNN's weights: MSD_musicnn (Million Song Dataset tags) or "
                                 "MTT_musicnn (MagnaTagATune tags). Changing it re-embeds musicnn.")
    models_batch_size: int = Field(4, ge=1, description="Audio windows per forward pass (GPU memory bound).")
    models_idle_unload_seconds: float = Field(360.0, ge=30.0, description="Unload a model idle this long.")
    decode_workers: int = Field(0, ge=0, description="Workers decoding audio ahead of the model; 0 = automatic "
                                "(one process per core, or cores - 1 threads, at least 1).")
    decode_processes: bool | None = Field(None, description="Decode in worker processes (true) or threads "
                                          "(false); unset = processes for runs of 16 tracks or more, of 2 or more in a "
                                          "warm-started run worker (its workers start with torch loaded).")
    nice: bool = Field(False, description="Run background re-embeds at the lowest CPU priority "
                       "(for boxes shared with the music server).")
    sensor_interval_seconds: int = Field(300, ge=30, description="How often the change sensor diffs the "
                                         "library against the store.")
    run_worker_server: bool = Field(True, description="Fork each Dagster run worker from a warm process the daemon "
                                    "keeps (Dagster, torch imported) instead of a freshly spawned interpreter.")
    deletion_grace_hours: float = Field(72.0, ge=0.0, description="How long the vectors of a track whose file "
                                        "Navidrome flags missing are kept (a NAS or disk may be offline); a track "
                                        "whose row is gone from Navidrome is deleted at once.")
    deletion_max_share: float = Field(0.10, gt=0.0, le=1.0, description="A run that would delete more than this "
                                      "share of the stored tracks at once (or finds a whole library folder "
                                      "missing) deletes nothing and reports why; confirm with confirm_deletions.")
    reconcile_cron: str = Field("0 3 * * *", description="When the full reconcile schedule runs (cron, UTC).")
    playlists_dir: Path | None = Field(None, description="Where the sonic mixes are written as M3U8 playlists; "
                                       "meant to be a folder inside the music library that Navidrome's "
                                       "PlaylistsPath allows (default: <data_dir>/playlists).")
    mix_size: int = Field(25, ge=1, le=500, description="Tracks per sonic mix.")
    dagster_postgres_url: SecretStr | None = Field(
        None, validation_alias=_env("NAVEMBED_DAGSTER_POSTGRES_URL", "DAGSTER_POSTGRES_URL"),
        description="Keep Dagster's runs, event log and schedules in PostgreSQL "
                    "(postgresql+psycopg2://user:pass@host:5432/db) instead of SQLite under data_dir.")

    @field_validator("playlists_dir", mode="before")
    @classmethod
    def _unset_playlists_dir(cls, value: object) -> object:
        """An empty value (how the stack passes an unset setting on) means the default, not the cwd."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("models_device")
    @classmethod
    def _device(cls, value: str) -> str:
        if value not in ("auto", "cuda", "cpu"):
            raise ValueError("must be auto, cuda or cpu")
        return value

    # ----- derived values ------------------------------------------------------------------
    @property
    def path_mapping(self) -> dict[str, str]:
        return parse_path_map(self.path_map)

    @property
    def milvus_data_dir(self) -> Path:
        return self.data_dir / "milvus"

    @property
    def fingerprints_db(self) -> Path:
        """The SQLite file of acoustic fingerprints, duplicate links and upload records."""
        return self.data_dir / "fingerprints.sqlite"

    @property
    def failures_db(self) -> Path:
        """The SQLite failure log: which tracks each model could not embed, and why."""
        return self.data_dir / "failures.sqlite"

    @property
    def mixes_dir(self) -> Path:
        """Where the sonic mixes' playlists go: ``playlists_dir``, else ``<data_dir>/playlists``."""
        return self.playlists_dir or self.data_dir / "playlists"

    @property
    def missing_db(self) -> Path:
        """The SQLite log of tracks whose files are missing (tombstones) and of refused deletions."""
        return self.data_dir / "missing.sqlite"

    @property
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def postgres_url(self) -> str | None:
        """Dagster's PostgreSQL URL, or None for the embedded SQLite instance."""
        url = self.dagster_postgres_url.get_secret_value().strip() if self.dagster_postgres_url else ""
        return url or None

    @property
    def weights_dir(self) -> Path:
        """Where downloaded weights are looked for: ``models_dir``, else ``<data_dir>/models``."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def model_options(self) -> ModelOptions:
        return ModelOptions(device=self.models_device, dtype=self.models_dtype,
                            idle_unload_seconds=self.models_idle_unload_seconds,
                            batch_size=self.models_batch_size, models_dir=self.weights_dir,
                            extra=model_extras(mert_layers=self.mert_layers,
                                               musicnn_variant=self.musicnn_variant))

    def enabled_models(self) -> list[str]:
        """The models to embed with: the explicit list, or dsp + deep models with weights present."""
        if self.models.strip() != "auto":
            names = [m.strip() for m in self.models.split(",") if m.strip()]
            unknown = [m for m in names if m not in MODEL_NAMES]
            if unknown:
                raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(MODEL_NAMES)}")
            return names
        return ["dsp", *[m for m in DEEP_MODEL_NAMES if self._weights_there(m)]]

    def _weights_there(self, model: str) -> bool:
        """Present, or present but unreadable: such a model stays enabled, so its runs and requests fail
        with what is wrong with its weights instead of the model silently disappearing."""
        try:
            return weights_present(weights_repos(model), self.weights_dir)
        except WeightsUnreadableError:
            return True


def env_names(settings_cls: type[BaseSettings]) -> dict[str, list[str]]:
    """Field name → the environment variables that set it (the NAVEMBED_ name first)."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    names: dict[str, list[str]] = {}
    for name, field in settings_cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names[name] = [str(choice) for choice in alias.choices]
        else:
            names[name] = [f"{prefix}{name}".upper()]
    return names


def env_table(settings_cls: type[BaseSettings]) -> str:
    """The README's configuration table, generated from the settings class itself."""
    rows = ["| variable | also read as | default | meaning |", "|---|---|---|---|"]
    for name, env in env_names(settings_cls).items():
        field = settings_cls.model_fields[name]
        default = field.default
        shown = f"`{default}`" if default not in (None, "") else "(none)"
        rows.append(f"| `{env[0]}` | {', '.join(f'`{e}`' for e in env[1:])} | {shown} | "
                    f"{(field.description or '').replace('|', '/')} |")
    return "\n".join(rows)
