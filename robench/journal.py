"""Append-only, checksummed journal of finished batches, for resume.

File layout: a sequence of records ``MAGIC | length (8 bytes, big endian) | sha256(payload) | payload``
where the payload is a ``torch.save`` of ``{"key": str, "data": {name: tensor}, "meta": {...}}``
(read back with ``weights_only=True``). The first record's key is ``__header__`` and identifies the
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

MAGIC = b"RBJ1"
_HEADER = "__header__"


def _encode(key: str, data: dict[str, torch.Tensor], meta: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"key": key, "data": {k: v.detach().cpu() for k, v in data.items()}, "meta": meta}, buffer)
    payload = buffer.getvalue()
    return MAGIC + len(payload).to_bytes(8, "big") + hashlib.sha256(payload).digest() + payload


class Journal:
    """Finished work of one run, keyed by ``evaluation/stage/batch``."""

    def __init__(self, path: Path, identity: dict[str, Any], resume: bool) -> None:
        """Open (``resume``) or start a journal.

        Raises:
            JournalError: resuming a journal of another run, or a corrupt header.
        """
        self.path = path
        self.identity = identity
        self._index: dict[str, tuple[int, int]] = {}  # key -> (payload offset, payload length)
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

    def _read(self) -> None:
        """Index the records of an existing journal, one at a time; cut a torn or corrupt tail."""
        good_end, header_seen = 0, False
        with self.path.open("rb") as handle:
            while True:
                frame = handle.read(44)
                if len(frame) < 44 or frame[:4] != MAGIC:
                    break
                length = int.from_bytes(frame[4:12], "big")
                payload = handle.read(length)
                if len(payload) != length or hashlib.sha256(payload).digest() != frame[12:44]:
                    break
                record = torch.load(io.BytesIO(payload), weights_only=True)
                if not header_seen:
                    if record["key"] != _HEADER:
                        raise JournalError(f"{self.path}: not a robench journal (no header)")
                    self._check_identity(record["meta"])
                    header_seen = True
                else:
                    self._index[record["key"]] = (good_end + 44, length)
                good_end += 44 + length
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
                "threat model, data, seed, batch size, device, torch thread count and robench version (or start without --resume)"
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
        digest, payload = self._reader.read(32), self._reader.read(length)
        if len(payload) != length or hashlib.sha256(payload).digest() != digest:
            raise JournalError(f"{self.path}: the record {key!r} changed on disk during the run; delete the file to start afresh")
        record = torch.load(io.BytesIO(payload), weights_only=True)
        return record["data"], record["meta"]

    def put(self, key: str, data: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Append a record and make it durable before returning; only its place in the file is kept."""
        encoded = _encode(key, data, meta)
        offset = self._handle.tell()
        self._handle.write(encoded)
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._index[key] = (offset + 44, len(encoded) - 44)

    def __len__(self) -> int:
        return len(self._index)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
        self._reader.close()
