"""Names that cannot escape OUT, atomic writes, moves that never overwrite, the scan order."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from leukofhir.batch.naming import inside, inside_name, message_key, output_base, safe_stem
from leukofhir.batch.scan import ScanStats, scan
from leukofhir.batch.store import Store, move_no_overwrite, sweep_temporaries
from tests.batch.helpers import OLD, age


@pytest.mark.parametrize(
    ("control_id", "stem"),
    [
        ("../../etc/x", "etc_x"),
        ("..", "message"),
        ("", "message"),
        ("/abs/path", "abs_path"),
        ("A B\x00C\\D", "A_B_C_D"),
        ("MSG-00012.3", "MSG-00012.3"),
        ("x" * 300, "x" * 48),
    ],
)
def test_safe_stem(control_id: str, stem: str) -> None:
    assert safe_stem(control_id) == stem


def test_output_names_stay_inside_out(tmp_path: Path) -> None:
    key = message_key("a/b.hl7", 0, "0" * 64)
    base = output_base("processed", "../../etc/passwd", key)
    assert base == f"processed/{key[:2]}/etc_passwd_{key}"
    assert inside(tmp_path, base).is_relative_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        inside(tmp_path, "../outside")
    for bad in ("/etc/x", "a/../../x", "a//b", "./a", "a\\b", "a\0b", "a/"):
        with pytest.raises(ValueError, match="escapes"):
            inside_name(str(tmp_path), bad)
    assert inside_name(str(tmp_path), base) == str(inside(tmp_path, base))
    assert message_key("a", 0, "h") != message_key("a", 1, "h") != message_key("b", 0, "h")


def test_store_writes_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    store = Store(tmp_path, fsync=True)
    store.write("x/y.json", b"one")
    store.write("x/y.json", b"two")
    assert (tmp_path / "x" / "y.json").read_bytes() == b"two"
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["y.json"]
    (tmp_path / "x" / ".y.json.123.tmp").write_bytes(b"half")
    assert sweep_temporaries(tmp_path) == 1
    with pytest.raises(ValueError, match="escapes"):
        store.write("../z", b"")


def test_move_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "done"
    for n in range(3):
        source = tmp_path / "in.hl7"
        source.write_bytes(b"%d" % n)
        move_no_overwrite(source, target, "sub/in.hl7")
        assert not source.exists()
    names = sorted(p.name for p in (target / "sub").iterdir())
    assert names == ["in.hl7", "in.hl7.1", "in.hl7.2"]
    assert (target / "sub" / "in.hl7").read_bytes() == b"0"
    # a move killed between link and unlink: completing it makes no copy
    source = tmp_path / "again.hl7"
    source.write_bytes(b"x")
    os.link(source, target / "again.hl7")
    assert move_no_overwrite(source, target, "again.hl7") == (target / "again.hl7").resolve()
    assert not source.exists()


def test_scan_order_is_mtime_then_name_per_folder(tmp_path: Path) -> None:
    for name, seconds in [("b", 5), ("a", 5), ("c", 1), ("z", 0)]:
        (tmp_path / name).write_bytes(b"x")
        age(tmp_path / name, seconds)
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "y").write_bytes(b"x")
    age(sub / "y", 0)
    found = [f.source for f in scan(tmp_path, now_ns=(OLD + 100) * 10**9)]
    assert found == ["z", "c", "a", "b", "sub/y"]


def test_scan_leaves_hidden_partial_young_and_excluded_files(tmp_path: Path) -> None:
    for name in (".hidden", "x.part", "x.tmp", "x~", "ok.hl7", "young.hl7"):
        (tmp_path / name).write_bytes(b"x")
        age(tmp_path / name)
    os.utime(tmp_path / "young.hl7", (OLD + 100, OLD + 100))
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "f").write_bytes(b"x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.json").write_bytes(b"x")
    stats = ScanStats()
    found = scan(
        tmp_path,
        now_ns=(OLD + 100) * 10**9 + 500_000_000,
        min_age=1.0,
        exclude=(tmp_path / "out",),
        stats=stats,
    )
    assert [f.source for f in found] == ["ok.hl7"]
    assert stats.left == {"hidden": 2, "partial": 3, "young": 1}


def test_scan_survives_a_directory_loop(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.hl7").write_bytes(b"x")
    age(tmp_path / "a" / "m.hl7")
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    (tmp_path / "b").symlink_to(tmp_path / "a")
    stats = ScanStats()
    found = [f.source for f in scan(tmp_path, now_ns=(OLD + 100) * 10**9, stats=stats)]
    assert found == ["a/m.hl7"]
    assert stats.left["loop"] == 2


def test_scan_of_a_big_folder_spills_and_keeps_the_order(tmp_path: Path) -> None:
    """More entries than ``sort_limit``: sorted runs go to temporary files, the order is
    exactly (mtime, name) per folder, then sub-folders by name, as without a limit."""
    root = tmp_path / "in"
    root.mkdir()
    expected_top = []
    for i in range(300):
        name = f"m{(i * 7919) % 1000:03d}.hl7"
        (root / name).write_bytes(b"x")
        seconds = (i * 31) % 17  # many files share an mtime: the name decides
        age(root / name, seconds)
        expected_top.append((seconds, name))
    for d in range(40):
        sub = root / f"sub{(d * 13) % 40:02d}"
        sub.mkdir()
        (sub / "m.hl7").write_bytes(b"x")
        age(sub / "m.hl7")
    spill = tmp_path / "spill"
    spill.mkdir()
    now = (OLD + 100) * 10**9
    stats = ScanStats()
    small = [f.source for f in scan(root, now_ns=now, sort_limit=7, spill_dir=spill, stats=stats)]
    assert stats.spilled >= 300 // 7 + 40 // 7
    assert small == [name for _, name in sorted(expected_top)] + [
        f"sub{d:02d}/m.hl7" for d in range(40)
    ]
    assert small == [f.source for f in scan(root, now_ns=now)]
    assert list(spill.iterdir()) == []  # the runs were anonymous files, gone


def test_scan_stops_on_a_full_spill_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    for name in "abcd":
        (tmp_path / name).write_bytes(b"x")
        age(tmp_path / name)

    def full(*args: object, **kwargs: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    with pytest.raises(OSError, match="No space"):
        list(scan(tmp_path, now_ns=(OLD + 100) * 10**9, sort_limit=2))
