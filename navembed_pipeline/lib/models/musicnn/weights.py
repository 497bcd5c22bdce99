"""MusiCNN's weights: fetched from PyPI's ``musicnn`` 0.1.0 wheel, converted once to safetensors.

The wheel (ISC licence) ships TensorFlow 1 checkpoints. ``install`` downloads it with this Python's
own pip (so a configured index or mirror is honoured), checks its pinned sha256 and its ISC
licence, reads ``MSD_musicnn`` and ``MTT_musicnn`` with our tensor-bundle reader (no TensorFlow),
and writes, under ``<models_dir>/musicnn-0.1.0/``: ``<variant>.safetensors`` (the network's
variables, optimiser slots left out), ``<variant>.json`` (variant, tags, the safetensors' and the
wheel's sha256) and the wheel's licence text. The folder appears in one rename, so a present
folder is a complete download. Torch-free: ``navembed models download`` imports no model.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.errors import ModelLoadError, NavembedError, WeightsMissingError
from navembed_pipeline.lib.models.musicnn.tags import VARIANTS, tag_names
from navembed_pipeline.lib.models.tf_checkpoint import read_checkpoint

WEIGHTS_ID = "pypi:musicnn==0.1.0"  # the entry in the model registry's WEIGHTS_REPOS
DIR_NAME = "musicnn-0.1.0"
WHEEL_REQUIREMENT = "musicnn==0.1.0"
WHEEL_FILE = "musicnn-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"  # as PyPI lists it
LICENCE = "ISC"
LICENCE_FILE = "LICENSE.musicnn.md"
DOWNLOAD_COMMAND = "navembed models download musicnn"
PIP_TIMEOUT_S = 600
# TF1 Saver also stores the Adam optimiser's slots and counters; inference needs none of them.
_TRAINING_ONLY = ("/Adam", "beta1_power", "beta2_power")


class WheelError(NavembedError):
    """The musicnn wheel could not be fetched, or it is not the wheel we pinned."""


def weights_dir(models_dir: Path) -> Path:
    """Where ``install`` puts the converted weights."""
    return Path(models_dir) / DIR_NAME


def install(models_dir: Path, *, wheel: Path | None = None) -> Path:
    """Fetch (unless ``wheel`` is given), verify and convert the wheel into ``weights_dir(models_dir)``."""
    target = weights_dir(models_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".musicnn-", dir=target.parent) as scratch:
        work = Path(scratch)
        wheel = wheel or fetch_wheel(work / "download")
        staged = work / DIR_NAME
        convert_wheel(wheel, staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    return target


def fetch_wheel(directory: Path) -> Path:
    """``pip download --no-deps musicnn==0.1.0`` into ``directory``; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(directory), WHEEL_REQUIREMENT]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WheelError(f"could not run pip to download {WHEEL_REQUIREMENT}: {exc}") from exc
    wheel = directory / WHEEL_FILE
    if done.returncode != 0 or not wheel.is_file():
        detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise WheelError(f"could not download {WHEEL_REQUIREMENT} from the package index (no network?): "
                         f"{' / '.join(detail) or f'pip exited {done.returncode}'}")
    return wheel


def convert_wheel(wheel: Path, target: Path) -> None:
    """Check ``wheel`` (sha256, ISC licence) and write each variant's safetensors + json into ``target``."""
    from safetensors.numpy import save_file

    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        raise WheelError(f"{wheel} has sha256 {digest}, not the pinned {WHEEL_SHA256} of {WHEEL_FILE}")
    target.mkdir(parents=True)
    with zipfile.ZipFile(wheel) as archive, tempfile.TemporaryDirectory() as scratch:
        (target / LICENCE_FILE).write_bytes(_check_licence(archive))
        for variant in VARIANTS:
            prefix = Path(scratch) / variant  # the wheel's checkpoints have an empty file prefix
            for suffix in ("index", "data-00000-of-00001"):
                Path(f"{prefix}.{suffix}").write_bytes(archive.read(f"musicnn/{variant}/.{suffix}"))
            tensors = {name: value for name, value in read_checkpoint(prefix).items()
                       if not any(part in name for part in _TRAINING_ONLY)}
            weights = target / f"{variant}.safetensors"
            save_file(tensors, str(weights), metadata={"variant": variant, "source": WHEEL_FILE})
            (target / f"{variant}.json").write_text(json.dumps({
                "variant": variant, "tags": list(tag_names(variant)), "licence": LICENCE,
                "source_wheel": WHEEL_FILE, "source_wheel_sha256": WHEEL_SHA256,
                "safetensors_sha256": sha256_of(weights)}, indent=1))


def load_variant(models_dir: Path | None, variant: str) -> dict[str, np.ndarray]:
    """The TensorFlow variables of ``variant``, verified; missing or corrupt files raise with the fix."""
    from safetensors.numpy import load_file

    if models_dir is None:
        raise WeightsMissingError(f"MusiCNN weights need a models folder (NAVEMBED_MODELS_DIR); "
                                  f"download them with: {DOWNLOAD_COMMAND}")
    folder = weights_dir(models_dir)
    weights, manifest = folder / f"{variant}.safetensors", folder / f"{variant}.json"
    if not weights.is_file() or not manifest.is_file():
        raise WeightsMissingError(f"MusiCNN weights for {variant} are not in {folder}; "
                                  f"download them with: {DOWNLOAD_COMMAND}")
    fix = f"re-download them with: {DOWNLOAD_COMMAND}"
    try:
        expected = json.loads(manifest.read_text())
        if expected.get("variant") != variant or expected.get("tags") != list(tag_names(variant)):
            raise ValueError(f"{manifest} describes {expected.get('variant')!r}, not {variant!r}")
        if sha256_of(weights) != expected.get("safetensors_sha256"):
            raise ValueError(f"{weights} does not match the sha256 recorded in {manifest}")
        return load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - unreadable files, a bad manifest, or safetensors' own error
        raise ModelLoadError(f"MusiCNN weights in {folder} are unreadable or corrupt ({exc}); {fix}") from exc


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_licence(archive: zipfile.ZipFile) -> bytes:
    metadata = archive.read("musicnn-0.1.0.dist-info/METADATA").decode("utf-8", "replace")
    licences = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("License:")]
    if licences != [LICENCE]:
        raise WheelError(f"{WHEEL_FILE} declares licence {licences}, expected {LICENCE}")
    return archive.read("musicnn-0.1.0.dist-info/LICENSE.md")
