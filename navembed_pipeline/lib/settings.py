"""The one settings object: environment (``NAVEMBED_*``, plus the original system's names) → code.

Read once where a process starts (Dagster definitions, the API's ``create_app``, the CLI) and
passed down; nothing else reads the environment.
"""

from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from navembed_pipeline.lib.models import DEEP_MODEL_NAMES, MODEL_NAMES, model_class
from navembed_pipeline.lib.models.base import ModelOptions
from navembed_pipeline.lib.models.weights import weights_present
from navembed_pipeline.lib.navidrome import parse_path_map


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
    models: str = Field("auto", description="Comma-separated models to embed with; 'auto' = dsp plus every "
                        "deep model whose weights are present.")
    models_dir: Path | None = Field(None, description="Directory of downloaded weights "
                                    "(<org>--<name>/ per repo); the Hugging Face cache is used too.")
    models_device: str = Field("auto", validation_alias=_env("NAVEMBED_MODELS_DEVICE", "TEXT_EMBEDDING_DEVICE"),
                               description="auto | cuda | cpu.")
    models_dtype: str = Field("float32", description="float32 | float16 | bfloat16 (half precision on GPU only).")
    models_batch_size: int = Field(4, ge=1, description="Audio windows per forward pass (GPU memory bound).")
    models_idle_unload_seconds: float = Field(360.0, ge=30.0, description="Unload a model idle this long.")
    decode_workers: int = Field(0, ge=0, description="CPU threads decoding audio ahead of the model; "
                                "0 = automatic (cores - 1, at least 1).")
    nice: bool = Field(False, description="Run background re-embeds at the lowest CPU priority "
                       "(for boxes shared with the music server).")
    sensor_interval_seconds: int = Field(300, ge=30, description="How often the change sensor diffs the "
                                         "library against the store.")

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
    def dagster_home(self) -> Path:
        return self.data_dir / "dagster"

    @property
    def model_options(self) -> ModelOptions:
        return ModelOptions(device=self.models_device, dtype=self.models_dtype,
                            idle_unload_seconds=self.models_idle_unload_seconds,
                            batch_size=self.models_batch_size, models_dir=self.models_dir)

    @property
    def effective_decode_workers(self) -> int:
        import os

        return self.decode_workers or max(1, (os.cpu_count() or 2) - 1)

    def enabled_models(self) -> list[str]:
        """The models to embed with: the explicit list, or dsp + deep models with weights present."""
        if self.models.strip() != "auto":
            names = [m.strip() for m in self.models.split(",") if m.strip()]
            unknown = [m for m in names if m not in MODEL_NAMES]
            if unknown:
                raise ValueError(f"unknown model(s) {unknown}; known: {', '.join(MODEL_NAMES)}")
            return names
        deep = [m for m in DEEP_MODEL_NAMES if weights_present(model_class(m).weights_repos, self.models_dir)]
        return ["dsp", *deep]


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
