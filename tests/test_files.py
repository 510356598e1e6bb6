"""Atomic writes: the target is always the old file or the whole new one."""
import os

import pytest

from tinymuse import files


def test_a_write_replaces_the_file_in_one_step(tmp_path):
    path = tmp_path / "deep" / "record.json"
    files.write_text(path, "old")
    files.write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["record.json"], "no temporary is left"


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "weights.bin"
    files.write_bytes(path, b"good")
    with pytest.raises(RuntimeError):
        with files.atomic_path(path) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("the disk is full")
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_a_failed_rename_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    files.write_bytes(path, b"good")

    def failing_replace(source, target):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        files.write_bytes(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_copies_are_whole_and_files_get_the_umasks_permissions(tmp_path):
    previous = os.umask(0o027)
    try:
        files.write_text(tmp_path / "a.txt", "text")
        files.copy_file(tmp_path / "a.txt", tmp_path / "b.txt")
    finally:
        os.umask(previous)
    assert (tmp_path / "b.txt").read_text() == "text"
    assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("links", [True, False], ids=["hard links", "no hard links"])
def test_a_write_that_must_not_overwrite_keeps_the_existing_file(tmp_path, monkeypatch, links):
    if not links:
        def no_links(source, target):
            raise OSError("this file system has no hard links")
        monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "picture.png"
    files.write_bytes(path, b"mine", overwrite=False)
    assert path.read_bytes() == b"mine"
    with pytest.raises(FileExistsError, match="picture.png exists"):
        files.write_bytes(path, b"new", overwrite=False)
    assert path.read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"], "no temporary is left"
