"""A real libtorrent seeder on 127.0.0.1, for tests, benchmarks and the demo.

    async with open_seeder(torrent, content_dir, upload_limit=2_000_000) as seeder:
        magnet = seeder.magnet()  # with x.pe=127.0.0.1:<seeder.port>

Torrents are added in seed mode (the content is trusted, pieces are checked as they are sent)
and seed as soon as `add` returns. The seeder needs no alerts: it only answers peers.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import libtorrent as lt
import trio

from .samples import magnet_for
from .torrents import TorrentSettings

LOOPBACK = "127.0.0.1"


class Seeder:
    """Seeds torrents from one loopback-only libtorrent session (made by `open_seeder`)."""

    def __init__(self, session: lt.session) -> None:
        self._session = session
        self._torrents: list[tuple[bytes, lt.torrent_handle]] = []

    @property
    def port(self) -> int:
        return self._session.listen_port()

    async def add(
        self, torrent: bytes, content_dir: Path, *, upload_limit: int | None = None
    ) -> None:
        """Seed `torrent` from content_dir (the directory that holds the torrent's name).
        upload_limit is in bytes per second for this torrent."""
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(torrent))
        params.save_path = str(Path(content_dir))
        params.flags |= lt.torrent_flags.seed_mode
        params.flags &= ~(lt.torrent_flags.auto_managed | lt.torrent_flags.paused)
        handle = self._session.add_torrent(params)
        self._torrents.append((torrent, handle))
        self.set_upload_limit(upload_limit, torrent)

    def set_upload_limit(self, limit: int | None, torrent: bytes | None = None) -> None:
        """Bytes per second for `torrent` (default: all of them); None or 0: unlimited."""
        for data, handle in self._torrents:
            if torrent is None or data == torrent:
                handle.set_upload_limit(limit or 0)

    def magnet(self, torrent: bytes | None = None, *, name: str | None = None) -> str:
        """The magnet of `torrent` (default: the first added) pointing at this seeder."""
        torrent = torrent or self._torrents[0][0]
        return magnet_for(torrent, name=name, peers=[(LOOPBACK, self.port)])

    def uploaded_bytes(self) -> int:
        """Payload bytes sent to peers since the seeder started, all torrents."""
        flags = lt.torrent_handle.query_accurate_download_counters
        return sum(handle.status(flags).total_payload_upload for _, handle in self._torrents)


@asynccontextmanager
async def open_seeder(
    torrent: bytes | None = None, content_dir: Path | None = None, *, upload_limit=None
) -> AsyncIterator[Seeder]:
    """A seeding session on 127.0.0.1 (random port), seeding `torrent` if given."""
    pack = TorrentSettings(loopback_only=True).settings_pack()
    pack["alert_mask"] = 0  # nobody reads them
    holder = [lt.session(pack)]
    seeder = Seeder(holder[0])
    try:
        if torrent is not None:
            await seeder.add(torrent, content_dir, upload_limit=upload_limit)
        yield seeder
    finally:
        seeder._session = None
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(holder.clear)  # joins libtorrent's threads
