"""The resume journal: durability, identity check, torn tails, corruption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench._errors import JournalError
from robench.journal import Journal

ID = {"checkpoint_sha256": "abc", "seed": 0}


def _two_records(path: Path) -> None:
    journal = Journal(path, ID, resume=False)
    journal.put("clean/predict/0", {"p": torch.arange(3.0)}, {"wall_time_s": 1.0})
    journal.put("clean/predict/1", {"p": torch.ones(2)}, {"wall_time_s": 2.0})
    journal.close()


def test_round_trip_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    _two_records(path)
    again = Journal(path, ID, resume=True)
    assert len(again) == 2
    data, meta = again.get("clean/predict/0")  # type: ignore[misc]
    assert torch.equal(data["p"], torch.arange(3.0)) and meta == {"wall_time_s": 1.0}
    again.close()


def test_without_resume_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    j = Journal(path, ID, resume=False)
    j.put("a", {"x": torch.zeros(1)}, {})
    j.close()
    fresh = Journal(path, ID, resume=False)
    assert len(fresh) == 0
    fresh.close()


def test_other_run_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    Journal(path, ID, resume=False).close()
    with pytest.raises(JournalError, match="different run.*seed"):
        Journal(path, {**ID, "seed": 1}, resume=True)


@pytest.mark.parametrize("cut", [1, 10, 50])
def test_torn_tail_is_dropped_and_truncated(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "j.bin"
    j = Journal(path, ID, resume=False)
    j.put("a", {"x": torch.zeros(4)}, {})
    j.put("b", {"x": torch.ones(4)}, {})
    j.close()
    size = path.stat().st_size
    path.write_bytes(path.read_bytes()[: size - cut])
    again = Journal(path, ID, resume=True)
    assert again.get("a") is not None and again.get("b") is None
    again.put("b", {"x": torch.ones(4)}, {})
    again.close()
    third = Journal(path, ID, resume=True)
    assert third.get("b") is not None
    third.close()


def test_flipped_byte_in_record_stops_there(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    j = Journal(path, ID, resume=False)
    j.put("a", {"x": torch.zeros(64)}, {})
    j.close()
    raw = bytearray(path.read_bytes())
    raw[-20] ^= 0xFF
    path.write_bytes(bytes(raw))
    again = Journal(path, ID, resume=True)
    assert again.get("a") is None
    again.close()


def test_corrupt_header(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    path.write_bytes(b"not a journal at all")
    with pytest.raises(JournalError, match="header"):
        Journal(path, ID, resume=True)


def test_records_are_read_back_from_disk(tmp_path: Path) -> None:
    """The journal keeps where each record is, not its tensors: get() returns a fresh copy from the file."""
    path = tmp_path / "j.bin"
    journal = Journal(path, ID, resume=False)
    probs = torch.rand(50, 10)
    kept = probs.clone()
    journal.put("corruptions/fog/1/0", {"probs": probs}, {"wall_time_s": 0.5})
    journal.put("corruptions/fog/1/1", {"probs": torch.zeros(3)}, {"wall_time_s": 0.1})
    probs.mul_(0)  # the caller reuses its buffer: the journal holds no view of it
    data, meta = journal.get("corruptions/fog/1/0")  # type: ignore[misc]
    assert torch.equal(data["probs"], kept) and data["probs"].data_ptr() != probs.data_ptr() and meta == {"wall_time_s": 0.5}
    assert len(journal) == 2 and journal.get("corruptions/fog/1/2") is None
    journal.close()
    # The file is the only copy: a record changed on disk after it was indexed is refused, not trusted.
    again = Journal(path, ID, resume=True)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(JournalError, match="changed on disk"):
        again.get("corruptions/fog/1/1")
    again.close()


def test_put_after_resume_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    j = Journal(path, ID, resume=False)
    j.put("a", {"x": torch.arange(4.0)}, {"n": 1})
    j.close()
    path.write_bytes(path.read_bytes() + b"RBJ2torn")  # a crash mid-append
    again = Journal(path, ID, resume=True)
    again.put("b", {"x": torch.ones(2)}, {"n": 2})
    assert torch.equal(again.get("a")[0]["x"], torch.arange(4.0))  # type: ignore[index]
    assert torch.equal(again.get("b")[0]["x"], torch.ones(2)) and again.get("b")[1] == {"n": 2}  # type: ignore[index]
    again.close()


def test_resume_indexes_without_deserialising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexing checks every record's digest but unpickles only the header: a long run's records
    are deserialised once, when they are used (they were all loaded twice before)."""
    path = tmp_path / "j.bin"
    j = Journal(path, ID, resume=False)
    for i in range(5):
        j.put(f"attacks/pgd/attack/{i}", {"x": torch.full((3,), float(i))}, {"i": i})
    j.close()
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(1) or real_load(*a, **k))
    again = Journal(path, ID, resume=True)
    assert len(again) == 5 and len(loads) == 1  # the header, for the identity check
    assert torch.equal(again.get("attacks/pgd/attack/3")[0]["x"], torch.full((3,), 3.0))  # type: ignore[index]
    assert len(loads) == 2
    again.close()


def test_journal_of_an_older_robench_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "j.bin"
    path.write_bytes(b"RBJ1" + bytes(40) + b"payload")
    with pytest.raises(JournalError, match="older robench"):
        Journal(path, ID, resume=True)


def test_a_damaged_length_field_is_a_torn_tail_not_a_huge_read(tmp_path: Path) -> None:
    """A flipped bit in a record's length made resume try to read exabytes (MemoryError)."""
    path = tmp_path / "j.bin"
    _two_records(path)
    raw = bytearray(path.read_bytes())
    second = raw.rfind(raw[:4])  # the last record's frame starts with the magic
    raw[second + 8] ^= 0x80  # the top byte of its 8-byte body length
    path.write_bytes(bytes(raw))
    again = Journal(path, ID, resume=True)
    assert len(again) == 1 and again.get("clean/predict/1") is None
    again.close()


def _journal(path: Path, records: dict[str, float], identity: dict[str, object] = ID) -> None:
    journal = Journal(path, identity, resume=False)
    for key, value in records.items():
        journal.put(key, {"x": torch.full((2,), value)}, {"value": value})
    journal.close()


def test_siblings_records_are_read_own_first_and_never_written(tmp_path: Path) -> None:
    """A resume with another number of processes read only its rank's own journal: the batches of
    the other ranks' journals were computed again."""
    own, sibling, third = tmp_path / "journal.bin", tmp_path / "journal.rank1.bin", tmp_path / "journal.rank2.bin"
    _journal(own, {"a": 0.0})
    _journal(sibling, {"a": 1.0, "b": 1.0})
    _journal(third, {"b": 2.0, "c": 2.0})
    before = sibling.read_bytes(), third.read_bytes()
    journal = Journal(own, ID, resume=True, siblings=[sibling, third])
    assert [journal.get(key)[1]["value"] for key in "abc"] == [0.0, 1.0, 2.0]  # type: ignore[index]
    assert journal.get("d") is None and len(journal) == 1
    journal.put("d", {"x": torch.zeros(1)}, {"value": 3.0})
    journal.close()
    assert (sibling.read_bytes(), third.read_bytes()) == before
    again = Journal(own, ID, resume=True)
    assert len(again) == 2 and again.get("d") is not None and again.get("b") is None
    again.close()


def test_a_sibling_of_another_run_is_refused(tmp_path: Path) -> None:
    own, sibling = tmp_path / "journal.bin", tmp_path / "journal.rank1.bin"
    _journal(own, {"a": 0.0})
    _journal(sibling, {"b": 1.0}, {**ID, "seed": 1})
    with pytest.raises(JournalError, match=r"journal\.rank1\.bin belongs to a different run \(seed: journal 1 vs now 0\)") as caught:
        Journal(own, ID, resume=True, siblings=[sibling])
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("cut", [1, 10, 50])
def test_a_torn_sibling_tail_is_ignored_and_not_cut(tmp_path: Path, cut: int) -> None:
    """The sibling's owner may be writing its last record (or die doing so): the reader skips it and
    leaves the file to its owner, who cuts it on its own resume and appends after it."""
    own, sibling = tmp_path / "journal.bin", tmp_path / "journal.rank1.bin"
    _journal(own, {})
    _journal(sibling, {"a": 1.0, "b": 1.0})
    torn = sibling.read_bytes()[:-cut]
    sibling.write_bytes(torn)
    journal = Journal(own, ID, resume=True, siblings=[sibling])
    assert journal.get("a") is not None and journal.get("b") is None
    assert sibling.read_bytes() == torn
    owner = Journal(sibling, ID, resume=True)  # the owner cuts its tail and appends while the reader holds it open
    owner.put("c", {"x": torch.ones(3)}, {"value": 4.0})
    owner.close()
    assert journal.get("a")[1] == {"value": 1.0} and journal.get("c") is None  # type: ignore[index]
    journal.close()


@pytest.mark.parametrize("length", [0, 3, 30, 100])
def test_a_sibling_its_rank_is_starting_holds_nothing(tmp_path: Path, length: int) -> None:
    """A resume with more processes than before: another rank creates its journal while this one
    lists the folder, so the file may end inside its header yet."""
    own, sibling = tmp_path / "journal.bin", tmp_path / "journal.rank1.bin"
    _journal(own, {"a": 0.0})
    _journal(sibling, {})
    sibling.write_bytes(sibling.read_bytes()[:length])
    journal = Journal(own, ID, resume=True, siblings=[sibling])
    assert journal.get("a") is not None and journal.get("b") is None
    journal.close()
    sibling.write_bytes(b"not a journal at all")  # a sibling that is no journal is refused, as one's own is
    with pytest.raises(JournalError, match="header is missing or corrupt"):
        Journal(own, ID, resume=True, siblings=[sibling])
