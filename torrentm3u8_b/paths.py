"""Safe names on B's disk.

A torrent's file list comes from strangers. `safe_relpath` turns any name from a torrent into a
relative POSIX path that stays under the directory it is joined to. `task_dir` and `hls_dir`
build B's own layout::

    <data>/tasks/<task_id>/            the task's download (libtorrent's save_path)
    <data>/tasks/<task_id>/hls/<i>/    the HLS rendition of file <i>: index.m3u8 + segNNNNN.ts
"""

import re
from pathlib import Path, PurePosixPath

NAME_MAX = 255  # bytes: the longest file name ext4/xfs/btrfs accept
MAX_EXTENSION = 16  # bytes: a longer "extension" is part of the name, not an extension
EMPTY_NAME = "_"

_TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # controls, lone surrogates


def safe_relpath(torrent_path: str) -> PurePosixPath:
    """A relative path made of `torrent_path`'s harmless parts.

    Backslashes count as separators; '.', '..', empty parts, absolute roots, a leading Windows
    drive ('C:'), control characters (NUL included) and lone surrogates are dropped; each part
    is cut to 255 bytes of UTF-8, keeping its extension. Never empty: nothing left gives '_'.
    """
    parts = []
    for raw in torrent_path.replace("\\", "/").split("/"):
        part = _UNSAFE_CHARS.sub("", raw)
        if not parts:
            part = _DRIVE.sub("", part)
        if part in ("", ".", ".."):
            continue
        parts.append(_trim(part))
    return PurePosixPath(*parts) if parts else PurePosixPath(EMPTY_NAME)


def _trim(part: str) -> str:
    if len(part.encode()) <= NAME_MAX:
        return part
    stem, dot, extension = part.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode()) > MAX_EXTENSION:
        stem, suffix = part, ""
    room = NAME_MAX - len(suffix.encode())
    return stem.encode()[:room].decode("utf-8", "ignore") + suffix


def check_task_id(task_id: str) -> str:
    """`task_id` if it is 1-64 of [A-Za-z0-9_-], else ValueError (it becomes a directory)."""
    if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
        raise ValueError(f"invalid task id {task_id!r}: use 1-64 letters, digits, '_' or '-'")
    return task_id


def task_dir(data: Path, task_id: str) -> Path:
    """<data>/tasks/<task_id>: where the task's torrent is downloaded."""
    return Path(data) / "tasks" / check_task_id(task_id)


def hls_dir(data: Path, task_id: str, file_index: int) -> Path:
    """<data>/tasks/<task_id>/hls/<file_index>: the HLS rendition of one file of the task."""
    if isinstance(file_index, bool) or not isinstance(file_index, int) or file_index < 0:
        raise ValueError(f"invalid file index {file_index!r}: use an integer >= 0")
    return task_dir(data, task_id) / "hls" / str(file_index)
