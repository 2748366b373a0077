"""Magnet link intake: turn the text a user pasted into a checked `Magnet`, or say what is wrong.

Accepted: `xt=urn:btih:` with 40 hex or 32 base32 characters (BitTorrent v1), `xt=urn:btmh:1220`
followed by 64 hex characters (v2, sha256 multihash), both at once (hybrid), other `xt` URNs next
to them (`urn:ed2k`, `urn:sha1`, ...), numbered parameters (`xt.1=`, `tr.2=`), percent-encoded
values and `+` for a space in `dn`. Everything else raises `InvalidMagnet` with a message meant
for the person who pasted the link.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import urllib.parse

MAX_MAGNET_LENGTH = 8 * 1024  # bytes (UTF-8) of the raw text, before stripping

_SCHEME = "magnet:?"
_BTIH = "urn:btih:"
_BTMH = "urn:btmh:"
_SHA256_MULTIHASH = "1220"  # multihash code 0x12 (sha2-256), length 0x20 (32 bytes)
_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_BASE32_32 = re.compile(r"[A-Za-z2-7]{32}")
_NUMBERED = re.compile(r"\.[0-9]+\Z")  # "xt.1" -> "xt", "tr.10" -> "tr"; "x.pe" stays "x.pe"


class InvalidMagnet(ValueError):
    """The text is not a usable BitTorrent magnet link; `str(exc)` says why."""


@dataclasses.dataclass(frozen=True)
class Magnet:
    uri: str  # the link as given, surrounding whitespace stripped
    info_hash: str  # btih when present, else btmh: the key a task is stored under
    btih: str | None  # v1 info hash, 40 lowercase hex
    btmh: str | None  # v2 info hash (sha256 digest without the multihash prefix), 64 lowercase hex
    dn: str | None = None  # display name
    tr: tuple[str, ...] = ()  # trackers
    x_pe: tuple[str, ...] = ()  # peer addresses, "host:port"
    ws: tuple[str, ...] = ()  # web seeds


def parse_magnet(text: str) -> Magnet:
    """Check a pasted magnet link and return its parts; raise `InvalidMagnet` otherwise."""
    if len(text) > MAX_MAGNET_LENGTH or _utf8_length(text) > MAX_MAGNET_LENGTH:
        raise InvalidMagnet("magnet link longer than 8 KiB")
    uri = text.strip()
    if uri[: len(_SCHEME)].lower() != _SCHEME:
        raise InvalidMagnet("not a magnet link")
    btih: str | None = None
    btmh: str | None = None
    dn: str | None = None
    params: dict[str, list[str]] = {"tr": [], "x.pe": [], "ws": []}
    for key, value in _split_query(uri[len(_SCHEME) :]):
        if key == "xt":
            value = value.strip()
            lowered = value.lower()
            if lowered.startswith(_BTIH):
                btih = _merge("btih", btih, _parse_btih(value[len(_BTIH) :]))
            elif lowered.startswith(_BTMH):
                btmh = _merge("btmh", btmh, _parse_btmh(value[len(_BTMH) :]))
        elif key == "dn":
            if dn is None and value:
                dn = value
        elif key in params and value:
            params[key].append(value)
    if btih is None and btmh is None:
        raise InvalidMagnet("no BitTorrent info hash (xt=urn:btih or urn:btmh)")
    return Magnet(
        uri=uri,
        info_hash=btih if btih is not None else btmh,
        btih=btih,
        btmh=btmh,
        dn=dn,
        tr=tuple(params["tr"]),
        x_pe=tuple(params["x.pe"]),
        ws=tuple(params["ws"]),
    )


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _split_query(query: str) -> list[tuple[str, str]]:
    """Split `a=1&b=2` into decoded (key, value) pairs; numbered keys lose their number."""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = _NUMBERED.sub("", urllib.parse.unquote(raw_key).strip().lower())
        # `+` means a space only in the display name; trackers and web seeds are URLs where a
        # literal `+` is data.
        unquote = urllib.parse.unquote_plus if key == "dn" else urllib.parse.unquote
        pairs.append((key, unquote(raw_value)))
    return pairs


def _parse_btih(value: str) -> str:
    if _HEX40.fullmatch(value):
        return value.lower()
    if _BASE32_32.fullmatch(value):
        try:
            return base64.b32decode(value.upper()).hex()
        except binascii.Error:  # pragma: no cover - the pattern only lets valid base32 through
            pass
    raise InvalidMagnet("info hash must be 40 hex or 32 base32 characters")


def _parse_btmh(value: str) -> str:
    digest = value[len(_SHA256_MULTIHASH) :]
    if value[: len(_SHA256_MULTIHASH)] != _SHA256_MULTIHASH or not _HEX64.fullmatch(digest):
        raise InvalidMagnet(
            "BitTorrent v2 info hash must be urn:btmh:1220 followed by 64 hex characters"
        )
    return digest.lower()


def _merge(kind: str, old: str | None, new: str) -> str:
    """The same hash given twice is fine (hex and base32 spellings too); two different ones not."""
    if old is not None and old != new:
        raise InvalidMagnet(
            f"magnet link has two different info hashes (xt=urn:{kind}:{old} and {new}): "
            "paste a link for a single torrent"
        )
    return new
