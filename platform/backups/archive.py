"""The backup archive: a stream of records, compressed, then sealed in AES-GCM frames.

On disk (or in an object store) an archive is

    b"KITHBAK1" | u32 header length | header JSON | frame | frame | ... | final frame

The header (clear text) names the backup and carries its data key: 32 random bytes made for this
backup alone, wrapped by the platform keyring (kith.platform.crypto, a kc1 token bound to the
tenant and backup id, or to "platform" and the backup id for the public schema's backups), so
rotating KITH_ENCRYPTION_KEYS never re-encrypts archives, and removing a key from the keyring
makes the archives it wrapped unreadable. Each frame is

    u32 ciphertext length | AES-256-GCM(data key, nonce = frame number, zlib bytes)

with the SHA-256 of the header, the frame number and a final flag as associated data: a flipped
bit anywhere, frames swapped, dropped or cut off at the end all fail to authenticate or are
missing the final frame. Inside, the decompressed stream is a sequence of records
(u8 kind | u32 length | payload): H (header JSON), T (table name), D (binary COPY bytes),
E (end of table JSON), M (manifest JSON, last).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kith.platform import crypto

MAGIC = b"KITHBAK1"
FRAME_BYTES = 1 << 20  # compressed bytes per encrypted frame
MAX_HEADER = 64 * 1024
MAX_FRAME = FRAME_BYTES * 2 + 1024
OUT_BYTES = 1 << 20  # decompressed bytes produced at a time when reading
COMPRESSION_LEVEL = 3

KIND_HEADER = b"H"
KIND_TABLE = b"T"
KIND_DATA = b"D"
KIND_END = b"E"
KIND_MANIFEST = b"M"
_RECORD = struct.Struct(">cI")
_U32 = struct.Struct(">I")


class BackupError(ValueError):
    """A backup cannot be made, found or read; the message is one line for a person."""


class BackupCorrupted(BackupError):
    """The archive does not authenticate, is truncated, or is not a Kith backup."""


def corrupted_message(backup_id: str) -> str:
    return f"backup {backup_id} is corrupted or was encrypted with a key not in KITH_ENCRYPTION_KEYS"


def truncated_message(backup_id: str) -> str:
    return f"backup {backup_id} is truncated: the archive ends before its last frame"


PLATFORM_OWNER = "platform"  # in place of a tenant id: the platform's own (public schema) backups


def owner_of(value: Any) -> int | str:
    """A header's tenant_id as written: a tenant id, or "platform" (whose key context no tenant shares)."""
    return PLATFORM_OWNER if value == PLATFORM_OWNER else int(value)


def key_context(tenant_id: int | str, backup_id: str) -> str:
    return f"backups:{owner_of(tenant_id)}:{backup_id}"


def _aad(header_hash: bytes, number: int, final: bool) -> bytes:
    return header_hash + struct.pack(">Q?", number, final)


def _nonce(number: int) -> bytes:
    return b"\0\0\0\0" + struct.pack(">Q", number)


class ArchiveWriter:
    """Writes records into `out`, compressing and sealing as it goes (memory: about one frame)."""

    def __init__(self, out: BinaryIO, *, tenant_id: int | str, backup_id: str, created_at: str,
                 ring: crypto.Keyring | None = None) -> None:
        self._out = out
        self._key = os.urandom(crypto.KEY_BYTES)
        header = json.dumps({
            "format": 1, "tenant_id": owner_of(tenant_id), "backup_id": backup_id, "created_at": created_at,
            "compression": "zlib", "cipher": "AES-256-GCM",
            "data_key": crypto.encrypt_bytes(self._key, key_context(tenant_id, backup_id), ring),
        }, sort_keys=True).encode()
        self._header_hash = hashlib.sha256(header).digest()
        out.write(MAGIC + _U32.pack(len(header)) + header)
        self.size = len(MAGIC) + _U32.size + len(header)
        self._aead = AESGCM(self._key)
        self._zip = zlib.compressobj(COMPRESSION_LEVEL)
        self._pending = bytearray()
        self._frames = 0

    def record(self, kind: bytes, payload: bytes) -> None:
        self._feed(_RECORD.pack(kind, len(payload)))
        self._feed(payload)

    def json_record(self, kind: bytes, value: Any) -> None:
        self.record(kind, json.dumps(value, sort_keys=True, ensure_ascii=False).encode())

    def _feed(self, data: bytes) -> None:
        self._pending += self._zip.compress(data)
        while len(self._pending) >= FRAME_BYTES:
            chunk = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            self._frame(chunk, final=False)

    def _frame(self, chunk: bytes, *, final: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._frames), chunk, _aad(self._header_hash, self._frames, final))
        self._out.write(_U32.pack(len(sealed)) + sealed)
        self.size += _U32.size + len(sealed)
        self._frames += 1

    def close(self) -> None:
        """Flush the compressor and write the final frame (what tells a whole archive from a cut one)."""
        self._pending += self._zip.flush()
        while len(self._pending) > FRAME_BYTES:
            chunk = bytes(self._pending[:FRAME_BYTES])
            del self._pending[:FRAME_BYTES]
            self._frame(chunk, final=False)
        self._frame(bytes(self._pending), final=True)
        self._pending.clear()


def _read_exact(src: BinaryIO, n: int, backup_id: str) -> bytes:
    data = src.read(n)
    if len(data) != n:
        raise BackupCorrupted(truncated_message(backup_id))
    return data


class ArchiveReader:
    """Reads records back, authenticating and decompressing frame by frame."""

    def __init__(self, src: BinaryIO, *, backup_id: str, ring: crypto.Keyring | None = None) -> None:
        self._src = src
        self.backup_id = backup_id
        magic = src.read(len(MAGIC))
        if magic != MAGIC:
            if len(magic) < len(MAGIC):
                raise BackupCorrupted(truncated_message(backup_id))
            raise BackupCorrupted(f"backup {backup_id} is not a Kith backup archive")
        length = _U32.unpack(_read_exact(src, _U32.size, backup_id))[0]
        if length > MAX_HEADER:
            raise BackupCorrupted(corrupted_message(backup_id))
        header_bytes = _read_exact(src, length, backup_id)
        try:
            self.header: dict[str, Any] = json.loads(header_bytes)
            key = crypto.decrypt_bytes(
                self.header["data_key"], key_context(self.header["tenant_id"], str(self.header["backup_id"])),
                ring,
            )
        except (ValueError, KeyError, TypeError, crypto.DecryptionError):
            raise BackupCorrupted(corrupted_message(backup_id)) from None
        if self.header.get("backup_id") != backup_id:
            raise BackupCorrupted(corrupted_message(backup_id))
        self.tenant_id = owner_of(self.header["tenant_id"])
        self._header_hash = hashlib.sha256(header_bytes).digest()
        self._aead = AESGCM(key)
        self._unzip = zlib.decompressobj()
        self._frames = 0
        self._done = False
        self._flushed = False
        self._buffer = bytearray()

    def _next_frame(self) -> bool:
        """Decrypt the next frame and start decompressing it; False once the final frame was read."""
        if self._done:
            return False
        head = self._src.read(_U32.size)
        if len(head) < _U32.size:
            raise BackupCorrupted(truncated_message(self.backup_id))
        length = _U32.unpack(head)[0]
        if length > MAX_FRAME:
            raise BackupCorrupted(corrupted_message(self.backup_id))
        sealed = _read_exact(self._src, length, self.backup_id)
        nonce = _nonce(self._frames)
        try:
            chunk = self._aead.decrypt(nonce, sealed, _aad(self._header_hash, self._frames, False))
        except InvalidTag:
            try:
                chunk = self._aead.decrypt(nonce, sealed, _aad(self._header_hash, self._frames, True))
            except InvalidTag:
                raise BackupCorrupted(corrupted_message(self.backup_id)) from None
            self._done = True
        if self._done and self._src.read(1):  # nothing may follow the final frame
            raise BackupCorrupted(corrupted_message(self.backup_id))
        self._frames += 1
        self._inflate(chunk)
        return True

    def _inflate(self, data: bytes) -> None:
        # at most OUT_BYTES at a time: a highly compressible frame never balloons in memory
        try:
            self._buffer += self._unzip.decompress(data, OUT_BYTES)
        except zlib.error:
            raise BackupCorrupted(corrupted_message(self.backup_id)) from None

    def _fill(self) -> bool:
        """Add decompressed bytes to the buffer; False when the archive has no more."""
        if self._unzip.unconsumed_tail:
            self._inflate(self._unzip.unconsumed_tail)
            return True
        if self._done:
            if self._flushed:
                return False
            self._flushed = True
            try:
                self._buffer += self._unzip.flush()
            except zlib.error:
                raise BackupCorrupted(corrupted_message(self.backup_id)) from None
            return True
        return self._next_frame()

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise BackupCorrupted(truncated_message(self.backup_id))
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def record(self) -> tuple[bytes, bytes]:
        """The next record (kind, payload)."""
        kind, length = _RECORD.unpack(self._take(_RECORD.size))
        return kind, self._take(length)

    def expect_json(self, kind: bytes) -> Any:
        got, payload = self.record()
        if got != kind:
            raise BackupCorrupted(corrupted_message(self.backup_id))
        return json.loads(payload)

    def table_data(self) -> Iterator[bytes]:
        """The D records of the current table, up to (and consuming) its E record."""
        while True:
            kind, payload = self.record()
            if kind == KIND_DATA:
                yield payload
            elif kind == KIND_END:
                self.table_end = json.loads(payload)
                return
            else:
                raise BackupCorrupted(corrupted_message(self.backup_id))

    table_end: dict[str, Any]

    def at_end(self) -> bool:
        """Whether everything was read (after the manifest): nothing may follow it."""
        while not self._buffer and self._fill():
            pass
        return not self._buffer
