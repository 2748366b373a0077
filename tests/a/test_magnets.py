import base64
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentm3u8_a.magnets import MAX_MAGNET_LENGTH, InvalidMagnet, Magnet, parse_magnet

HEX = "f7079c66cca02ab45934b9868572060010dfc97e"
BASE32 = "64DZYZWMUAVLIWJUXGDIK4QGAAIN7SL6"  # the same 20 bytes
V2 = "cb" * 32
OTHER_HEX = "0123456789abcdef0123456789abcdef01234567"

VALID = [
    # (text, expected fields)
    (f"magnet:?xt=urn:btih:{HEX}", {"info_hash": HEX, "btih": HEX, "btmh": None, "dn": None}),
    (f"magnet:?xt=urn:btih:{HEX.upper()}", {"info_hash": HEX}),
    (f"magnet:?xt=urn:btih:{BASE32}", {"info_hash": HEX, "btih": HEX}),
    (f"magnet:?xt=urn:btih:{BASE32.lower()}", {"info_hash": HEX}),
    (f"MAGNET:?XT=URN:BTIH:{HEX}", {"info_hash": HEX}),
    (f"  \t magnet:?xt=urn:btih:{HEX}\n", {"uri": f"magnet:?xt=urn:btih:{HEX}"}),
    (f"magnet:?xt=urn:btmh:1220{V2}", {"info_hash": V2, "btih": None, "btmh": V2}),
    (f"magnet:?xt=urn:btmh:1220{V2.upper()}", {"info_hash": V2}),
    (
        f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{V2}&dn=hybrid",
        {"info_hash": HEX, "btih": HEX, "btmh": V2, "dn": "hybrid"},
    ),
    (
        f"magnet:?xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0&xt=urn:btih:{HEX}"
        "&xt=urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ",
        {"info_hash": HEX},
    ),
    (f"magnet:?xt.1=urn:sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ&xt.2=urn:btih:{HEX}", {"btih": HEX}),
    (f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{BASE32}", {"info_hash": HEX}),  # same hash twice
    (
        f"magnet:?dn=Big+Buck%20Bunny%20%281080p%29&xt=urn:btih:{HEX}",
        {"dn": "Big Buck Bunny (1080p)"},
    ),
    (f"magnet:?xt=urn:btih:{HEX}&dn=%E6%97%A5%E6%9C%AC", {"dn": "日本"}),
    (f"magnet:?xt=urn:btih:{HEX}&dn=first&dn=second", {"dn": "first"}),
    (
        f"magnet:?xt=urn:btih:{HEX}&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce"
        "&tr.1=udp://127.0.0.1:1337&tr=http://t/a+b&tr=",
        {"tr": ("http://127.0.0.1:6969/announce", "udp://127.0.0.1:1337", "http://t/a+b")},
    ),
    (
        f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:6881&x.pe=[::1]:6882&ws=http%3A%2F%2Fh%2Ff",
        {"x_pe": ("127.0.0.1:6881", "[::1]:6882"), "ws": ("http://h/f",)},
    ),
    (f"magnet:?&&xt=urn:btih:{HEX}&&unknown=1&kt=a+b", {"info_hash": HEX, "tr": ()}),
]

INVALID = [
    # (text, message)
    ("", "not a magnet link"),
    ("   \n", "not a magnet link"),
    ("hello world", "not a magnet link"),
    (f"https://example.com/?xt=urn:btih:{HEX}", "not a magnet link"),
    (f"magnet:xt=urn:btih:{HEX}", "not a magnet link"),
    (f"xt=urn:btih:{HEX}", "not a magnet link"),
    ("magnet:?", "no BitTorrent info hash (xt=urn:btih or urn:btmh)"),
    ("magnet:?dn=movie&tr=http://t/a", "no BitTorrent info hash (xt=urn:btih or urn:btmh)"),
    (
        "magnet:?xt=urn:ed2k:31d6cfe0d16ae931b73c59d7e0c089c0&xt=urn:sha1:3I42H3S6NNFQ2MSVX7XZ",
        "no BitTorrent info hash (xt=urn:btih or urn:btmh)",
    ),
    ("magnet:?xt=urn:btih:", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{HEX[:-1]}", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{HEX}0", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{HEX[:-1]}g", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{BASE32[:-1]}", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{BASE32[:-1]}1", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btih:{HEX} {HEX}", "info hash must be 40 hex or 32 base32 characters"),
    (f"magnet:?xt=urn:btmh:{V2}", "BitTorrent v2 info hash must be urn:btmh:1220 followed by 64"),
    (f"magnet:?xt=urn:btmh:1114{V2}", "BitTorrent v2 info hash must be urn:btmh:1220 followed by"),
    (f"magnet:?xt=urn:btmh:1220{V2[:-2]}", "BitTorrent v2 info hash must be urn:btmh:1220"),
    (f"magnet:?xt=urn:btmh:1220{V2[:-1]}x", "BitTorrent v2 info hash must be urn:btmh:1220"),
    (
        f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{OTHER_HEX}",
        f"magnet link has two different info hashes (xt=urn:btih:{HEX} and {OTHER_HEX})",
    ),
    (
        f"magnet:?xt=urn:btmh:1220{V2}&xt=urn:btmh:1220{'ab' * 32}",
        "magnet link has two different info hashes (xt=urn:btmh:",
    ),
    (
        f"magnet:?xt=urn:btih:{HEX}&dn=" + "a" * MAX_MAGNET_LENGTH,
        "magnet link longer than 8 KiB",
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_valid(text, expected):
    magnet = parse_magnet(text)
    assert isinstance(magnet, Magnet)
    for field, value in expected.items():
        assert getattr(magnet, field) == value, field
    assert magnet.uri == text.strip()
    assert magnet.info_hash == (magnet.btih or magnet.btmh)


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid(text, message):
    with pytest.raises(InvalidMagnet) as info:
        parse_magnet(text)
    assert str(info.value).startswith(message)
    assert isinstance(info.value, ValueError)


def test_length_limit_counts_the_raw_text():
    link = f"magnet:?xt=urn:btih:{HEX}&dn="
    at_limit = link + "a" * (MAX_MAGNET_LENGTH - len(link))
    assert parse_magnet(at_limit).dn.startswith("a")
    with pytest.raises(InvalidMagnet, match="longer than 8 KiB"):
        parse_magnet(at_limit + "a")
    with pytest.raises(InvalidMagnet, match="longer than 8 KiB"):  # whitespace counts too
        parse_magnet(at_limit + " ")
    with pytest.raises(InvalidMagnet, match="longer than 8 KiB"):  # bytes, not characters
        parse_magnet(link + "é" * ((MAX_MAGNET_LENGTH - len(link)) // 2 + 1))


def test_magnet_is_frozen():
    magnet = parse_magnet(f"magnet:?xt=urn:btih:{HEX}")
    with pytest.raises(AttributeError):
        magnet.info_hash = OTHER_HEX


@settings(database=None, max_examples=300)
@given(st.binary(min_size=20, max_size=20))
def test_hex_and_base32_spellings_agree(digest):
    from_hex = parse_magnet(f"magnet:?xt=urn:btih:{digest.hex().upper()}")
    from_base32 = parse_magnet(f"magnet:?xt=urn:btih:{base64.b32encode(digest).decode().lower()}")
    assert from_hex.info_hash == from_base32.info_hash == digest.hex()


def _parses_or_refuses(text: str) -> None:
    try:
        magnet = parse_magnet(text)
    except InvalidMagnet as exc:
        assert str(exc)
    else:
        assert len(magnet.info_hash) in (40, 64)
        assert set(magnet.info_hash) <= set(string.hexdigits.lower())


@settings(database=None, max_examples=500)
@given(st.text())
def test_any_text_parses_or_raises_invalid_magnet(text):
    _parses_or_refuses(text)


_PARAM_VALUES = st.one_of(
    st.text(max_size=80),
    st.sampled_from([f"urn:btih:{HEX}", f"urn:btih:{BASE32}", f"urn:btmh:1220{V2}", "urn:btih:"]),
    st.builds(
        lambda tail: f"urn:btih:{tail}", st.text(alphabet="0123456789abcdefXYZ%", max_size=42)
    ),
)
_PARAMS = st.lists(
    st.tuples(
        st.sampled_from(["xt", "xt.1", "dn", "tr", "x.pe", "ws", "", "XT", "%78t"]), _PARAM_VALUES
    ),
    max_size=6,
)


@settings(database=None, max_examples=200)
@given(st.sampled_from(["magnet:?", " MAGNET:?", "magnet:", ""]), _PARAMS)
def test_magnet_shaped_text_parses_or_raises_invalid_magnet(prefix, params):
    _parses_or_refuses(prefix + "&".join(f"{key}={value}" for key, value in params))
