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

A resume may use another number of processes than the run it continues: each rank writes its own
journal and also reads its siblings (the other ranks' journals of the same run, of this or an earlier
process count). A sibling's header must hold the same identity; it is indexed once, up to its size
then (its owner may be appending, or cutting its own torn tail, meanwhile), and never written or cut.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

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


def _check_identity(path: Path, found: dict[str, Any], identity: dict[str, Any]) -> None:
    differing = sorted(k for k in set(found) | set(identity) if found.get(k) != identity.get(k))
    if differing:
        details = "; ".join(f"{k}: journal {found.get(k)!r} vs now {identity.get(k)!r}" for k in differing[:3])
        raise JournalError(
            f"{path} belongs to a different run ({details}); resume needs the same checkpoint, "
            "threat model (its description and claims aside), data, seed, batch size, device, torch thread count, numerics settings (TF32, deterministic kernels) and robench version (or start without --resume)"
        )


def _scan(handle: BinaryIO, path: Path, identity: dict[str, Any], sibling: bool) -> tuple[dict[str, tuple[int, int]], int]:
    """Index the records of the journal open as ``handle``, one at a time, up to its size now.

    Returns:
        The index (key -> (offset of the key, length of key + payload)) and the end of the last good
        record: a torn or corrupt record and everything after it are left out. A sibling that ends
        inside its header (its rank is starting it now) holds nothing.

    Raises:
        JournalError: a header of another run, a missing or corrupt header, an older robench's journal.
    """
    index: dict[str, tuple[int, int]] = {}
    good_end, header_seen, ended = 0, False, False
    size = handle.seek(0, os.SEEK_END)
    handle.seek(0)
    while True:
        frame = handle.read(_FRAME)
        if not header_seen and frame[:4] == _OLD_MAGIC:
            raise JournalError(f"{path} was written by an older robench; start without --resume")
        if len(frame) < _FRAME or frame[:4] != MAGIC:
            ended = len(frame) < _FRAME and MAGIC.startswith(frame[:4])
            break
        key_length, length = int.from_bytes(frame[4:8], "big"), int.from_bytes(frame[8:16], "big")
        if good_end + _FRAME + key_length + length > size:  # a damaged length: reading it would claim the memory
            ended = True
            break
        body = handle.read(key_length + length)
        if len(body) != key_length + length:  # cut (by its owner) while being read
            ended = True
            break
        if hashlib.sha256(body).digest() != frame[16:48]:
            break
        try:
            key = body[:key_length].decode()
        except UnicodeDecodeError:
            break
        if not header_seen:
            if key != _HEADER:
                raise JournalError(f"{path}: not a robench journal (no header)")
            _check_identity(path, _decode(body[key_length:])[1], identity)
            header_seen = True
        else:
            index[key] = (good_end + _FRAME, key_length + length)
        good_end += _FRAME + key_length + length
    if not header_seen and not (sibling and ended):
        raise JournalError(f"{path}: journal header is missing or corrupt; delete the file to start afresh")
    return index, good_end


def _read_back(reader: BinaryIO, path: Path, key: str, where: tuple[int, int]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    offset, length = where
    reader.seek(offset - 32)
    digest, body = reader.read(32), reader.read(length)
    if len(body) != length or hashlib.sha256(body).digest() != digest or not body.startswith(key.encode()):
        raise JournalError(f"{path}: the record {key!r} changed on disk during the run; delete the file to start afresh")
    return _decode(body[len(key.encode()):])


class _Sibling:
    """Another rank's journal of the same run, read only."""

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = path
        try:
            self.reader = path.open("rb")
        except OSError as exc:
            raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        try:
            self.index = _scan(self.reader, path, identity, sibling=True)[0]
        except OSError as exc:
            self.reader.close()
            raise JournalError(f"cannot read the journal {path}: {exc.strerror or exc}") from None
        except BaseException:
            self.reader.close()
            raise


class Journal:
    """Finished work of one run, keyed by ``evaluation/stage/batch``."""

    def __init__(self, path: Path, identity: dict[str, Any], resume: bool, siblings: Sequence[Path] = ()) -> None:
        """Open (``resume``) or start a journal.

        Args:
            path: This rank's journal, the only file it writes.
            identity: What of the run its numbers depend on; a journal read must have been written with the same.
            resume: Keep the records ``path`` holds (its torn tail cut) rather than start it afresh.
            siblings: Other journals of the run (other ranks', of this or an earlier process count) whose
                records :meth:`get` also returns; read only: never written, nor cut at a torn tail.

        Raises:
            JournalError: resuming a journal of another run, a corrupt header, a sibling of another
                run or with a corrupt header, or a path that cannot be read or written (a folder, no permission).
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
        self._siblings: list[_Sibling] = []
        try:
            for sibling in siblings:
                self._siblings.append(_Sibling(sibling, identity))
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        """Index the records of an existing journal, one at a time; cut a torn or corrupt tail."""
        with self.path.open("rb") as handle:
            self._index, good_end = _scan(handle, self.path, self.identity, sibling=False)
            end = handle.seek(0, os.SEEK_END)
        if good_end < end:
            with self.path.open("r+b") as handle:
                handle.truncate(good_end)

    def get(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The data and metadata journalled under ``key``, if any, read back from the file: this
        journal's record, else the first sibling's that holds one (in the order given).

        Raises:
            JournalError: the record changed on disk since it was written or indexed.
        """
        where = self._index.get(key)
        if where is not None:
            return _read_back(self._reader, self.path, key, where)
        for sibling in self._siblings:
            where = sibling.index.get(key)
            if where is not None:
                return _read_back(sibling.reader, sibling.path, key, where)
        return None

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
        """The number of records in this journal's own file (not its siblings')."""
        return len(self._index)

    def close(self) -> None:
        """Close the files (the siblings' too)."""
        self._handle.close()
        self._reader.close()
        for sibling in self._siblings:
            sibling.reader.close()
