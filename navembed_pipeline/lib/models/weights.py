"""Where model weights live, and the one explicit act that downloads them.

Weights are never shipped and never fetched implicitly: MuQ-MuLan, MERT and Music2Latent
weights are licensed CC BY-NC 4.0, so downloading is the user's own act
(``navembed models download``). A repo ``org/name`` is looked up, in order, in
``<models_dir>/org--name/`` and in the Hugging Face cache (offline, no network).

MusiCNN's weights (ISC, free) come from a PyPI wheel instead: their id ``pypi:musicnn==0.1.0``
names the folder ``<models_dir>/musicnn-0.1.0/`` (see ``musicnn.weights``); no Hugging Face cache.
"""

from pathlib import Path

from navembed_pipeline.lib.errors import WeightsMissingError, WeightsUnreadableError

CC_BY_NC = ("CC BY-NC 4.0 (non-commercial use only; code is MIT/Apache). "
            "The weights are not part of navembed and are never redistributed by it.")


PYPI_PREFIX = "pypi:"


def local_dir_name(repo_id: str) -> str:
    """``org/name`` -> ``org--name``, ``pypi:name==1.0`` -> ``name-1.0`` (the folder under the models dir)."""
    if repo_id.startswith(PYPI_PREFIX):
        return repo_id.removeprefix(PYPI_PREFIX).replace("==", "-")
    return repo_id.replace("/", "--")


def find_weights(repo_id: str, models_dir: Path | None, *, model_name: str) -> Path:
    """Return the local directory holding ``repo_id``'s files; raise ``WeightsMissingError`` when they
    are not on this machine, ``WeightsUnreadableError`` when they are but cannot be read."""
    if models_dir is not None:
        candidate = Path(models_dir) / local_dir_name(repo_id)
        try:
            if candidate.is_dir() and any(candidate.iterdir()):
                return candidate
        except OSError as exc:
            raise WeightsUnreadableError(
                f"weights for model {model_name!r} ({repo_id}) at {candidate} cannot be read: {exc}; fix its "
                f"permissions, or delete it and download again: navembed models download {model_name}") from exc
    cached = None if repo_id.startswith(PYPI_PREFIX) else _hf_cache_dir(repo_id, model_name)
    if cached is not None:
        return cached
    where = f"{models_dir}/{local_dir_name(repo_id)}" if models_dir else "the Hugging Face cache"
    raise WeightsMissingError(
        f"weights for model {model_name!r} ({repo_id}) are not on this machine (looked in {where}). "
        f"Download them explicitly with: navembed models download {model_name}")


def weights_present(repo_ids: tuple[str, ...], models_dir: Path | None) -> bool:
    """True when every repo a model needs is available locally (damaged weights raise
    ``WeightsUnreadableError``: they are there, and "not present" would hide what is wrong)."""
    try:
        for repo_id in repo_ids:
            find_weights(repo_id, models_dir, model_name="?")
    except WeightsMissingError:
        return False
    return True


def download(repo_id: str, models_dir: Path) -> Path:
    """Download ``repo_id`` into ``<models_dir>/org--name`` (network; explicit user action only)."""
    from navembed_pipeline.lib.models.musicnn import weights as musicnn_weights

    if repo_id == musicnn_weights.WEIGHTS_ID:
        return musicnn_weights.install(Path(models_dir))
    from huggingface_hub import snapshot_download

    target = Path(models_dir) / local_dir_name(repo_id)
    target.mkdir(parents=True, exist_ok=True)
    snapshot_download(repo_id=repo_id, local_dir=str(target))
    return target


def _hf_cache_dir(repo_id: str, model_name: str) -> Path | None:
    """The cached snapshot of ``repo_id``; None when the cache does not hold the repo at all."""
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}"
    advice = f"delete {folder} and download again: navembed models download {model_name}"
    try:
        return Path(snapshot_download(repo_id=repo_id, local_files_only=True))
    except LocalEntryNotFoundError as exc:
        if _holds_something(folder):  # a ref or snapshot without its files: an interrupted or damaged cache
            raise WeightsUnreadableError(f"the Hugging Face cache of {repo_id} at {folder} is damaged (it has the "
                                         f"repo but no usable snapshot); {advice} ({exc})") from exc
        return None
    except Exception as exc:  # noqa: BLE001 - whatever else the cache does wrong is reported, with the advice
        raise WeightsUnreadableError(f"the Hugging Face cache of {repo_id} at {folder} cannot be read; {advice} "
                                     f"({type(exc).__name__}: {exc})") from exc


def _holds_something(folder: Path) -> bool:
    try:
        return any(any((folder / part).iterdir()) for part in ("refs", "snapshots") if (folder / part).is_dir())
    except OSError:
        return True
