"""TorrentM3U8 service A: the public web app, API, signaling relay and system of record."""

__version__ = "0.1.0"
