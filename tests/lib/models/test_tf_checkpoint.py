"""Our TensorFlow tensor-bundle reader, on the real ``musicnn`` wheel's checkpoints and on broken files."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

from navembed_pipeline.lib.models.tf_checkpoint import CheckpointError, crc32c, read_checkpoint, read_index

DATA = "data-00000-of-00001"


def extract(wheel: Path, variant: str, target: Path) -> Path:
    """The wheel's ``musicnn/<variant>/.index`` and ``.data-…`` as ``target/<variant>.*``; the prefix."""
    prefix = target / variant
    with zipfile.ZipFile(wheel) as archive:
        for suffix in ("index", DATA):
            Path(f"{prefix}.{suffix}").write_bytes(archive.read(f"musicnn/{variant}/.{suffix}"))
    return prefix


def test_crc32c_matches_the_castagnoli_check_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros


def test_reads_every_variable_of_the_real_msd_checkpoint(musicnn_wheel: Path, tmp_path: Path) -> None:
    tensors = read_checkpoint(extract(musicnn_wheel, "MSD_musicnn", tmp_path))
    network = {name: t for name, t in tensors.items() if "Adam" not in name and not name.startswith("beta")}
    assert network["conv2d/kernel"].shape == (7, 38, 1, 204)  # timbral 7 × 38 bands
    assert network["conv2d_1/kernel"].shape == (7, 67, 1, 204)
    assert network["conv2d_2/kernel"].shape == (128, 1, 1, 51)  # temporal 128 frames
    assert network["conv2d_5/kernel"].shape == (7, 561, 1, 64)  # mid end over the 561 front-end features
    assert network["dense/kernel"].shape == (1506, 200) and network["dense_1/kernel"].shape == (200, 50)
    assert network["batch_normalization_9/moving_variance"].shape == (1506,)
    assert len(network) == 11 * 4 + 8 * 2 + 2 * 2  # batch norms, convolutions, dense layers
    assert all(t.dtype == np.float32 and np.isfinite(t).all() for t in network.values())
    assert (network["batch_normalization_9/moving_variance"] > 0).all()


def test_index_lists_entries_in_key_order_with_their_shapes(musicnn_wheel: Path, tmp_path: Path) -> None:
    entries = read_index(Path(f"{extract(musicnn_wheel, 'MTT_musicnn', tmp_path)}.index"))
    names = [entry.name for entry in entries]
    assert names == sorted(names)
    assert {e.name: e.shape for e in entries}["dense_1/bias"] == (50,)


def test_a_file_that_is_not_an_index_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "model.index"
    junk.write_bytes(b"this is not a TensorFlow checkpoint index" * 4)
    with pytest.raises(CheckpointError, match="model.index is not a valid TensorFlow checkpoint index.*magic"):
        read_index(junk)


def test_a_missing_index_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="cannot read checkpoint index"):
        read_checkpoint(tmp_path / "absent")


def test_a_flipped_byte_in_the_data_fails_its_crc(musicnn_wheel: Path, tmp_path: Path) -> None:
    prefix = extract(musicnn_wheel, "MSD_musicnn", tmp_path)
    data = Path(f"{prefix}.{DATA}")
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="is corrupt: tensor .* fails its CRC32C check"):
        read_checkpoint(prefix)


def test_truncated_data_is_a_clear_error(musicnn_wheel: Path, tmp_path: Path) -> None:
    prefix = extract(musicnn_wheel, "MSD_musicnn", tmp_path)
    data = Path(f"{prefix}.{DATA}")
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="is truncated or corrupt"):
        read_checkpoint(prefix)


def test_a_damaged_index_block_fails_its_crc(musicnn_wheel: Path, tmp_path: Path) -> None:
    prefix = extract(musicnn_wheel, "MSD_musicnn", tmp_path)
    index = Path(f"{prefix}.index")
    raw = bytearray(index.read_bytes())
    raw[40] ^= 0x20  # inside the first data block (a tensor name)
    index.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="fails its CRC32C check"):
        read_index(index)
