import os
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentm3u8_b.paths import NAME_MAX, hls_dir, safe_relpath, task_dir


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("movie.mp4", "movie.mp4"),
        ("show/s01/e01.mkv", "show/s01/e01.mkv"),
        ("../../etc/passwd", "etc/passwd"),
        ("show/../../../x.mp4", "show/x.mp4"),
        ("/etc/cron.d/evil", "etc/cron.d/evil"),
        ("//server/share/x.mp4", "server/share/x.mp4"),
        ("./a/./b.mp4", "a/b.mp4"),
        ("a//b.mp4", "a/b.mp4"),
        ("..\\..\\windows\\system32\\x.dll", "windows/system32/x.dll"),
        ("C:\\Users\\x.mp4", "Users/x.mp4"),
        ("C:x.mp4", "x.mp4"),
        ("c:/x.mp4", "x.mp4"),
        ("show/C:/x.mp4", "show/C:/x.mp4"),  # only a leading drive means anything
        ("a\x00b.mp4", "ab.mp4"),
        ("new\nline\r\t.mp4", "newline.mp4"),
        ("bell\x07/\x1b[31mred.mp4", "bell/[31mred.mp4"),
        ("del\x7f\x85.mp4", "del.mp4"),
        ("lone\ud800surrogate.mp4", "lonesurrogate.mp4"),
        ("...", "..."),
        ("..../x.mp4", "..../x.mp4"),
        ("film é 映画.mkv", "film é 映画.mkv"),
        ("", "_"),
        ("/", "_"),
        ("../..", "_"),
        ("\x00\x01", "_"),
        ("C:", "_"),
    ],
)
def test_safe_relpath(name, expected):
    assert safe_relpath(name) == PurePosixPath(expected)


def test_long_names_are_cut_to_255_bytes_keeping_the_extension():
    cut = safe_relpath("dir/" + "n" * 300 + ".mkv")
    assert cut.parent == PurePosixPath("dir")
    assert len(cut.name.encode()) == NAME_MAX
    assert cut.name.endswith("n.mkv")


def test_long_multibyte_names_are_cut_between_characters():
    cut = safe_relpath("映" * 100 + ".mp4")  # 3 bytes each
    assert len(cut.name.encode()) <= NAME_MAX
    assert cut.name == "映" * 83 + ".mp4"


def test_a_long_extension_is_cut_like_the_rest_of_the_name():
    cut = safe_relpath("a." + "x" * 300)
    assert len(cut.name.encode()) == NAME_MAX
    assert cut.name.startswith("a.xxx")


@given(st.text())
def test_any_name_stays_under_its_directory(name):
    path = safe_relpath(name)
    base = "/data/tasks/t1"
    joined = os.path.normpath(os.path.join(base, path))
    assert joined.startswith(base + "/")
    assert not path.is_absolute()
    assert path.parts and all(part not in ("", ".", "..") for part in path.parts)
    assert all(len(part.encode()) <= NAME_MAX for part in path.parts)
    assert all(ch >= " " and not "\x7f" <= ch <= "\x9f" for ch in str(path))
    assert safe_relpath(str(path)) == path


def test_task_and_hls_dirs():
    data = Path("/srv/b")
    assert task_dir(data, "Ab-9_z") == Path("/srv/b/tasks/Ab-9_z")
    assert hls_dir(data, "t1", 3) == Path("/srv/b/tasks/t1/hls/3")
    assert task_dir(data, "x" * 64).name == "x" * 64


@pytest.mark.parametrize(
    "task_id", ["", "x" * 65, "..", "a/b", "a.b", "a b", "ä", "a\x00", None, 7, "../t1"]
)
def test_bad_task_ids_are_refused(task_id):
    with pytest.raises(ValueError, match="invalid task id"):
        task_dir(Path("/srv/b"), task_id)


@pytest.mark.parametrize("index", [-1, 1.0, "1", True, None])
def test_bad_file_indexes_are_refused(index):
    with pytest.raises(ValueError, match="invalid file index"):
        hls_dir(Path("/srv/b"), "t1", index)
