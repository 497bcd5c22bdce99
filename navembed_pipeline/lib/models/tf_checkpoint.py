"""Read TensorFlow's tensor-bundle checkpoints (``<prefix>.index`` + ``<prefix>.data-00000-of-00001``)
without TensorFlow.

The ``.index`` file is a LevelDB-style SSTable: a 48-byte footer points at an index block, whose
entries point at data blocks; each block holds prefix-compressed ``key → value`` entries. The
entry under the empty key is a ``BundleHeaderProto``; every other key is a tensor name whose value
is a ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked CRC32C). The ``.data`` shard
holds the raw little-endian tensor bytes. Only what TF1 ``Saver`` checkpoints use is supported:
uncompressed blocks, one data shard, plain (unsliced) numeric tensors. Anything else — a wrong
magic number, a truncated file, a CRC mismatch — raises ``CheckpointError`` naming the file.
"""

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from navembed_pipeline.lib.errors import ModelLoadError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)
NO_COMPRESSION = 0
HEADER_KEY = b""
# tensorflow/core/framework/types.proto → numpy (little-endian)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 19: np.dtype("<f2"), 17: np.dtype("<u2"),
    22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
_CRC_MASK_DELTA = 0xA282EAD8


class CheckpointError(ModelLoadError):
    """A tensor-bundle checkpoint is missing, truncated, corrupt or uses an unsupported feature."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data shard (a decoded ``BundleEntryProto``)."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None


def read_checkpoint(prefix: Path | str) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint at ``prefix`` (``prefix.index`` + ``prefix.data-00000-of-00001``)."""
    prefix = str(prefix)
    entries = read_index(Path(prefix + ".index"))
    data_path = Path(prefix + ".data-00000-of-00001")
    try:
        data = data_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint data {data_path}: {exc}") from exc
    return {entry.name: _tensor(entry, data, data_path) for entry in entries}


def read_index(path: Path) -> list[TensorEntry]:
    """The tensor entries listed in a bundle's ``.index`` SSTable, in key order."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint index {path}: {exc}") from exc
    try:
        pairs = _table_entries(raw)
        entries = [_bundle_entry(key.decode("utf-8"), value) for key, value in pairs if key != HEADER_KEY]
    except (IndexError, ValueError, UnicodeDecodeError, struct.error) as exc:
        raise CheckpointError(f"{path} is not a valid TensorFlow checkpoint index: {exc}") from exc
    if not entries:
        raise CheckpointError(f"{path} lists no tensors")
    return entries


# ----- SSTable ------------------------------------------------------------------------------------
def _table_entries(raw: bytes) -> list[tuple[bytes, bytes]]:
    if len(raw) < FOOTER_SIZE:
        raise ValueError(f"{len(raw)} bytes, shorter than the {FOOTER_SIZE}-byte table footer")
    footer = raw[-FOOTER_SIZE:]
    if struct.unpack("<Q", footer[-8:])[0] != TABLE_MAGIC:
        raise ValueError("bad table magic number (truncated or not an SSTable)")
    _, pos = _block_handle(footer, 0)  # the metaindex block: unused by tensor bundles
    index_handle, _ = _block_handle(footer, pos)
    pairs = []
    for _, handle_bytes in _block_entries(_block(raw, *index_handle)):
        pairs.extend(_block_entries(_block(raw, *_block_handle(handle_bytes, 0)[0])))
    return pairs


def _block_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return (offset, size), pos


def _block(raw: bytes, offset: int, size: int) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(raw) - FOOTER_SIZE:
        raise ValueError(f"block [{offset}, {end}) runs past the end of the table")
    if raw[end] != NO_COMPRESSION:
        raise ValueError(f"compressed block (type {raw[end]}); only uncompressed tables are supported")
    block = raw[offset:end]
    stored = struct.unpack("<I", raw[end + 1 : end + 5])[0]
    if _unmask(stored) != crc32c(raw[offset : end + 1]):
        raise ValueError(f"block at {offset} fails its CRC32C check")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    restarts = struct.unpack("<I", block[-4:])[0]
    limit = len(block) - 4 * (restarts + 1)
    if limit < 0:
        raise ValueError("block restart array is larger than the block")
    pairs, key, pos = [], b"", 0
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise ValueError("block entry runs past its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        pairs.append((key, block[pos : pos + value_len]))
        pos += value_len
    return pairs


# ----- protobuf -----------------------------------------------------------------------------------
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(message: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` pairs of a protobuf message (varints as ints, the rest as bytes)."""
    fields, pos = [], 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            value, pos = message[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = message[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(message):
            raise ValueError("protobuf field runs past its message")
        fields.append((number, value))
    return fields


def _bundle_entry(name: str, message: bytes) -> TensorEntry:
    values: dict[str, int] = {"dtype": 0, "shard_id": 0, "offset": 0, "size": 0}
    shape: tuple[int, ...] = ()
    crc: int | None = None
    for number, value in _fields(message):
        if number == 1:
            values["dtype"] = int(value)  # type: ignore[arg-type]
        elif number == 2:
            shape = _shape(bytes(value))  # type: ignore[arg-type]
        elif number in (3, 4, 5):
            values[{3: "shard_id", 4: "offset", 5: "size"}[number]] = int(value)  # type: ignore[arg-type]
        elif number == 6:
            crc = struct.unpack("<I", value)[0]  # type: ignore[arg-type]
        elif number == 7:
            raise ValueError(f"tensor {name!r} is stored in slices (partitioned variables are unsupported)")
    return TensorEntry(name=name, shape=shape, crc32c=crc, **values)


def _shape(message: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _fields(message):
        if number == 2:  # repeated Dim {int64 size = 1; string name = 2}
            dims.append(next((int(v) for n, v in _fields(bytes(value)) if n == 1), 0))  # type: ignore[arg-type]
        elif number == 3 and value:
            raise ValueError("unknown_rank shape in a checkpoint entry")
    return tuple(dims)


def _tensor(entry: TensorEntry, data: bytes, data_path: Path) -> np.ndarray:
    if entry.shard_id != 0:
        raise CheckpointError(f"tensor {entry.name!r} lives in shard {entry.shard_id}; only one-shard "
                              "checkpoints are supported")
    if entry.dtype not in DTYPES:
        raise CheckpointError(f"tensor {entry.name!r} has unsupported dtype enum {entry.dtype}")
    dtype = DTYPES[entry.dtype]
    expected = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
    end = entry.offset + entry.size
    if entry.size != expected or end > len(data):
        raise CheckpointError(f"{data_path} is truncated or corrupt: tensor {entry.name!r} needs bytes "
                              f"[{entry.offset}, {end}) of {len(data)} ({expected} expected for "
                              f"shape {entry.shape})")
    chunk = data[entry.offset : end]
    if entry.crc32c is not None and _unmask(entry.crc32c) != crc32c(chunk):
        raise CheckpointError(f"{data_path} is corrupt: tensor {entry.name!r} fails its CRC32C check")
    return np.frombuffer(chunk, dtype=dtype).reshape(entry.shape).copy()


# ----- CRC32C (Castagnoli), as LevelDB and TensorFlow use it ----------------------------------------
def _crc_tables() -> np.ndarray:
    """Slicing-by-8 tables: ``tables[k][b]`` is the CRC of byte ``b`` followed by ``k`` zero bytes."""
    tables = np.zeros((8, 256), dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        tables[0, byte] = crc
    for k in range(1, 8):
        previous = tables[k - 1]
        tables[k] = (previous >> 8) ^ tables[0][previous & 0xFF]
    return tables


_TABLES = _crc_tables()
_T = [list(map(int, table)) for table in _TABLES]


def crc32c(data: bytes) -> int:
    """CRC32C of ``data`` (slicing-by-8 in Python: about 1 s for the 9.5 MB MusiCNN data file)."""
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    crc = 0xFFFFFFFF
    body = len(data) - len(data) % 8
    words = struct.unpack(f"<{body // 4}I", data[:body]) if body else ()
    for i in range(0, len(words), 2):
        low = words[i] ^ crc
        high = words[i + 1]
        crc = (t7[low & 0xFF] ^ t6[(low >> 8) & 0xFF] ^ t5[(low >> 16) & 0xFF] ^ t4[low >> 24]
               ^ t3[high & 0xFF] ^ t2[(high >> 8) & 0xFF] ^ t1[(high >> 16) & 0xFF] ^ t0[high >> 24])
    for byte in data[body:]:
        crc = (crc >> 8) ^ t0[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    rotated = (masked - _CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF
