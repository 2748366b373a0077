"""What the `torrentm3u8` CLI prints: human units, and tasks and workers as text.

The units follow the pages' `static/js/format.js` (SI sizes, "3 min", a percentage that never
shows 100% early), so the terminal and the browser say the same thing. Unknown values (None,
negative, not finite) print as `UNKNOWN`.
"""

from __future__ import annotations

import math
import time
from typing import Any

UNKNOWN = "?"
BYTE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")
MAX_ETA = 365 * 86400  # seconds: a longer estimate means "unknown"


def _known(value: float | None) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


def human_bytes(n: float | None) -> str:
    """1234567 -> "1.2 MB"; one decimal below 100 of a unit, none above."""
    if not _known(n):
        return UNKNOWN
    if n < 1000:
        return f"{round(n)} B"
    unit = 0
    while n >= 1000 and unit < len(BYTE_UNITS) - 1:
        n /= 1000
        unit += 1
    text = f"{n:.1f}" if n < 100 else f"{round(n)}"
    if float(text) >= 1000 and unit < len(BYTE_UNITS) - 1:
        # 999.96 kB would round to "1000 kB": say "1.0 MB".
        unit += 1
        text = f"{float(text) / 1000:.1f}"
    return f"{text} {BYTE_UNITS[unit]}"


def human_rate(bytes_per_second: float | None) -> str:
    """Bytes per second -> "1.2 MB/s"."""
    if not _known(bytes_per_second):
        return UNKNOWN
    return human_bytes(bytes_per_second) + "/s"


def human_duration(seconds: float | None) -> str:
    """A length of time -> "45 s", "3 min", "2 h 5 min", "2 h", "3 d 4 h"."""
    if not _known(seconds):
        return UNKNOWN
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 24 * 60:
        hours, rest = divmod(minutes, 60)
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    days, rest = divmod(round(s / 3600), 24)
    return f"{days} d {rest} h" if rest else f"{days} d"


def human_eta(seconds: float | None) -> str:
    """Time left; None, negative or absurd estimates are unknown."""
    if not _known(seconds) or seconds > MAX_ETA:
        return UNKNOWN
    return human_duration(seconds)


def human_percent(percent: float | None) -> str:
    """0..100 -> "42.3%", "7%"; floored to a tenth, so it never says 100% before it is."""
    if not isinstance(percent, int | float) or not math.isfinite(percent):
        return UNKNOWN
    floored = math.floor(min(100.0, max(0.0, percent)) * 10) / 10
    return f"{floored:.0f}%" if floored.is_integer() else f"{floored:.1f}%"


def status_line(task: dict[str, Any]) -> str:
    """One line saying where a task is: the `watch` line and the state row of `show`."""
    state, p = task["state"], task["progress"]
    if state == "waiting":
        return "waiting for a worker"
    if state == "failed":
        return f"failed: {task.get('error') or 'no reason given'}"
    if state == "downloading" and task.get("phase") == "metadata":
        return f"downloading  fetching metadata  {_peers(p['peers'])}"
    if state == "downloading":
        parts = [
            human_percent(p["percent"]),
            f"{human_bytes(p['downloaded'])} of {human_bytes(p['total'] or task_size(task))}",
            human_rate(p["download_rate"]),
            _peers(p["peers"]),
        ]
        if p.get("eta") is not None:
            parts.append(f"{human_eta(p['eta'])} left")
        return "  ".join(["downloading", *parts])
    if state == "transcoding":
        done = [human_percent(t["percent"]) for t in task.get("transcode") or []]
        return f"transcoding  HLS {', '.join(done) or human_percent(0)}"
    if state == "playable":
        ready = task.get("hls") or []
        seconds = sum(h.get("duration") or 0 for h in ready)
        files = f"{len(ready)} file{'s' if len(ready) != 1 else ''}"
        return f"playable  {files}, {human_duration(seconds)} of video"
    return f"{state}  {human_bytes(task_size(task))}"


def _peers(n: int) -> str:
    return f"{n} peer" if n == 1 else f"{n} peers"


def task_size(task: dict[str, Any]) -> int | None:
    """Bytes of the torrent: its files once known, else what the worker reported, else None."""
    return task.get("total_size") or task["progress"]["total"] or None


def show_task(task: dict[str, Any]) -> str:
    added = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(task["added_at"]))
    lines = [
        f"{task['id']}  {task['name']}",
        f"  state      {status_line(task)}",
        f"  info hash  {task['info_hash']}",
        f"  size       {human_bytes(task_size(task))}",
        f"  added      {added}",
    ]
    if task.get("worker_id"):
        lines.append(f"  worker     {task['worker_id']}")
    hls = {h["file_index"]: h for h in task.get("hls") or []}
    for f in task["files"]:
        kind = "video" if f["is_video"] else "     "
        line = f"  [{f['index']}] {kind} {human_bytes(f['size']):>9}  {f['path']}"
        if f["index"] in hls:
            h = hls[f["index"]]
            live = ", growing" if h.get("live") else ""
            line += f"  (HLS {human_duration(h['duration'])}, {h['segments']} segments{live})"
        lines.append(line)
    if (more := task.get("file_count", 0) - len(task["files"])) > 0:
        lines.append(f"  ... and {more} more files (the API's task.files lists them all)")
    return "\n".join(lines)


def list_rows(tasks: list[dict[str, Any]]) -> str:
    if not tasks:
        return "no tasks yet: torrentm3u8 add MAGNET"
    width = max(len(t["id"]) for t in tasks)
    rows = [f"{'ID':<{width}}  {'STATE':<11}  {'DONE':>6}  {'SIZE':>9}  NAME"]
    for t in tasks:
        done = human_percent(t["progress"]["percent"])
        size = human_bytes(task_size(t))
        rows.append(f"{t['id']:<{width}}  {t['state']:<11}  {done:>6}  {size:>9}  {t['name']}")
    return "\n".join(rows)


def worker_rows(workers: list[dict[str, Any]]) -> str:
    if not workers:
        return "no workers have connected: start torrentm3u8-b with A's worker token"
    width = max(len(w["id"]) for w in workers)
    rows = []
    for w in workers:
        tasks = f"{w['tasks']} task{'s' if w['tasks'] != 1 else ''}"
        if w.get("max_tasks"):
            tasks += f" of {w['max_tasks']}"
        if w["connected"]:
            rows.append(f"{w['id']:<{width}}  connected     {tasks}  version {w['version']}")
        else:
            ago = human_duration(max(0.0, time.time() - w["last_seen"]))
            rows.append(f"{w['id']:<{width}}  disconnected  {tasks}  last seen {ago} ago")
    return "\n".join(rows)
