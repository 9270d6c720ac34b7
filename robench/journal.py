"""Append-only, checksummed journal of finished batches, for resume.

File layout: a sequence of records ``MAGIC | length (8 bytes, big endian) | sha256(payload) | payload``
where the payload is a ``torch.save`` of ``{"key": str, "data": {name: tensor}, "meta": {...}}``
(read back with ``weights_only=True``). The first record's key is ``__header__`` and identifies the
run (checkpoint, threat model, dataset, code version, seed, batch size); a journal of a different
run is refused. A torn last record (a crash mid-write) is dropped and the file cut back to the last
good record. Every append is flushed and fsync'd.
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
        self._records: dict[str, tuple[dict[str, torch.Tensor], dict[str, Any]]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume and path.exists():
            self._read()
        else:
            with path.open("wb") as handle:
                handle.write(_encode(_HEADER, {}, identity))
                handle.flush()
                os.fsync(handle.fileno())
        self._handle = path.open("ab")

    def _read(self) -> None:
        raw = self.path.read_bytes()
        offset, good_end, header_seen = 0, 0, False
        while offset < len(raw):
            start = offset
            if raw[offset : offset + 4] != MAGIC or offset + 44 > len(raw):
                break
            length = int.from_bytes(raw[offset + 4 : offset + 12], "big")
            digest = raw[offset + 12 : offset + 44]
            payload = raw[offset + 44 : offset + 44 + length]
            if len(payload) != length or hashlib.sha256(payload).digest() != digest:
                break
            record = torch.load(io.BytesIO(payload), weights_only=True)
            offset = start + 44 + length
            good_end = offset
            if not header_seen:
                if record["key"] != _HEADER:
                    raise JournalError(f"{self.path}: not a robench journal (no header)")
                self._check_identity(record["meta"])
                header_seen = True
                continue
            self._records[record["key"]] = (record["data"], record["meta"])
        if not header_seen:
            raise JournalError(f"{self.path}: journal header is missing or corrupt; delete the file to start afresh")
        if good_end < len(raw):
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
        """The data and metadata journalled under ``key``, if any."""
        return self._records.get(key)

    def put(self, key: str, data: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Append a record and make it durable before returning."""
        self._handle.write(_encode(key, data, meta))
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._records[key] = ({k: v.detach().cpu() for k, v in data.items()}, meta)

    def __len__(self) -> int:
        return len(self._records)

    def close(self) -> None:
        """Close the file."""
        self._handle.close()
