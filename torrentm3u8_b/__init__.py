"""TorrentM3U8 service B: the download worker (libtorrent, FFmpeg, aiortc)."""

__version__ = "0.1.0"
