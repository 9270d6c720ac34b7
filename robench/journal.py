"""Append-only, checksummed journal of finished batches, for resume.

File layout: a sequence of records
``MAGIC | key length (4 bytes) | payload length (8 bytes) | sha256(key + payload) | key | payload``
(lengths big endian, the key UTF-8) where the payload is a ``torch.save`` of
``{"data": {name: tensor}, "meta": {...}}`` (read back with ``weights_only=True``). The key lies
outside the payload, so indexing a journal on resume checks every record's digest without
deserialising it. The first record's key is ``__header__`` and identifies the
run (checkpoint, threat model, dataset, code version, seed, batch size); a journal of a different
run is refused. A torn last record (a crash mid-write) is dropped and the file cut back to the last
good record. Every append is flushed and fsync'd.

The journal keeps only an index (key -> where the record's payload lies in the file); :meth:`Journal.get`
reads a record back from disk, so a long run's finished batches are not held in memory twice.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from robench._errors import JournalError

MAGIC = b"RBJ2"
_OLD_MAGIC = b"RBJ1"  # robench before the key moved out of the payload
_FRAME = 48  # MAGIC, key length, payload length, digest
_HEADER = "__header__"


def _encode(key: str, data: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"data": {k: v.detach().cpu() for k, v in data.items()}, "meta": meta}, buffer)
    name, payload = key.encode(), buffer.getvalue()
    body = name + payload
    return MAGIC + len(name).to_bytes(4, "big") + len(payload).to_bytes(8, "big") + hashlib.sha256(body).digest() + body


def _decode(payload: bytes) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    record = torch.load(io.BytesIO(payload), weights_only=True)
    return record["data"], record["meta"]


class Journal:
    """Finished work of one run, keyed by ``evaluation/stage/batch``."""

    def __init__(self, path: Path, identity: dict[str, Any], resume: bool) -> None:
        """Open (``resume``) or start a journal.

        Raises:
            JournalError: resuming a journal of another run, a corrupt header, or a path that
                cannot be read or written (a folder, no permission).
        """
        self.path = path
        self.identity = identity
        self._index: dict[str, tuple[int, int]] = {}  # key -> (offset of the key, length of key + payload)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if resume and path.exists():
                self._read()
            else:
                with path.open("wb") as handle:
                    handle.write(_encode(_HEADER, {}, identity))
                    handle.flush()
                    os.fsync(handle.fileno())
            self._handle = path.open("ab")
            self._reader = path.open("rb")
        except OSError as exc:
            raise JournalError(f"cannot use the journal {path}: {exc.strerror or exc}") from None

    def _read(self) -> None:
        """Index the records of an existing journal, one at a time; cut a torn or corrupt tail."""
        good_end, header_seen = 0, False
        with self.path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(0)
            while True:
                frame = handle.read(_FRAME)
                if not header_seen and frame[:4] == _OLD_MAGIC:
                    raise JournalError(f"{self.path} was written by an older robench; start without --resume")
                if len(frame) < _FRAME or frame[:4] != MAGIC:
                    break
                key_length, length = int.from_bytes(frame[4:8], "big"), int.from_bytes(frame[8:16], "big")
                if good_end + _FRAME + key_length + length > size:  # a damaged length: reading it would claim the memory
                    break
                body = handle.read(key_length + length)
                if len(body) != key_length + length or hashlib.sha256(body).digest() != frame[16:48]:
                    break
                try:
                    key = body[:key_length].decode()
                except UnicodeDecodeError:
                    break
                if not header_seen:
                    if key != _HEADER:
                        raise JournalError(f"{self.path}: not a robench journal (no header)")
                    self._check_identity(_decode(body[key_length:])[1])
                    header_seen = True
                else:
                    self._index[key] = (good_end + _FRAME, key_length + length)
                good_end += _FRAME + key_length + length
            end = handle.seek(0, os.SEEK_END)
        if not header_seen:
            raise JournalError(f"{self.path}: journal header is missing or corrupt; delete the file to start afresh")
        if good_end < end:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)

    def _check_identity(self, found: dict[str, Any]) -> None:
        differing = sorted(k for k in set(found) | set(self.identity) if found.get(k) != self.identity.get(k))
        if differing:
            details = "; ".join(f"{k}: journal {found.get(k)!r} vs now {self.identity.get(k)!r}" for k in differing[:3])
            raise JournalError(
                f"{self.path} belongs to a different run ({details}); resume needs the same checkpoint, "
                "threat model (its description and claims aside), data, seed, batch size, device, torch thread count, numerics settings (TF32, deterministic kernels) and robench version (or start without --resume)"
            )

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The data and metadata journalled under ``key``, if any, read back from the file.

        Raises:
            JournalError: the record changed on disk since it was written or indexed.
        """
        where = self._index.get(key)
        if where is None:
            return None
        offset, length = where
        self._reader.seek(offset - 32)
        digest, body = self._reader.read(32), self._reader.read(length)
        if len(body) != length or hashlib.sha256(body).digest() != digest or not body.startswith(key.encode()):
            raise JournalError(f"{self.path}: the record {key!r} changed on disk during the run; delete the file to start afresh")
        return _decode(body[len(key.encode()):])

    def put(self, key: str, data: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Append a record and make it durable before returning; only its place in the file is kept."""
        encoded = _encode(key, data, meta)
        offset = self._handle.tell()
        try:
            self._handle.write(encoded)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as exc:  # disk full: a torn record is cut on resume
            raise JournalError(f"cannot write the journal {self.path}: {exc.strerror or exc}") from None
        self._index[key] = (offset + _FRAME, len(encoded) - _FRAME)

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
        self._reader.close()
