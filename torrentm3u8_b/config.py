"""Service B's settings. Every one has a flag and an environment variable (`torrentm3u8-b
--help`); tests build a `WorkerConfig` directly."""

from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path

PROGRESS_INTERVAL = 5.0  # seconds between progress reports to A
METADATA_TIMEOUT = 120.0  # seconds to wait for a peer to send the torrent's metadata
RESUME_SAVE_INTERVAL = 30.0  # seconds between libtorrent resume-data saves
TRANSCODE_CONCURRENCY = 1  # FFmpeg runs at once (each uses every core)
MAX_STREAMS = 8  # concurrent WebRTC viewers per worker
STREAM_IDLE_TIMEOUT = 60.0  # seconds without a request before a viewer's peer is closed


@dataclasses.dataclass
class WorkerConfig:
    server: str  # ws://HOST:PORT/worker or wss://...
    data_dir: Path
    token: str
    worker_id: str | None = None
    loopback_only: bool = False
    progress_interval: float = PROGRESS_INTERVAL
    metadata_timeout: float = METADATA_TIMEOUT
    resume_save_interval: float = RESUME_SAVE_INTERVAL
    transcode_concurrency: int = TRANSCODE_CONCURRENCY
    max_streams: int = MAX_STREAMS
    stream_idle_timeout: float = STREAM_IDLE_TIMEOUT
    download_all_files: bool = False  # default: only the video files
    watch_while_downloading: bool = True  # HLS of the main video while it downloads
    max_tasks: int = 0  # 0 = no limit announced to A

    def resolve_worker_id(self) -> str:
        """The worker id: given, or made once and kept in `<data>/worker-id`."""
        if self.worker_id:
            return self.worker_id
        path = Path(self.data_dir) / "worker-id"
        try:
            self.worker_id = path.read_text().strip()
        except FileNotFoundError:
            self.worker_id = "worker-" + secrets.token_hex(4)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.worker_id + "\n")
        return self.worker_id
