"""TURN for real: Debian's coturn on 127.0.0.1, A configured with it and `ice_transport_policy
"relay"`, so the viewer and B may only talk through relayed candidates. A hands the TURN server
to both sides (stream.open's result, rtc.offer's params); media goes viewer <-> coturn <-> B."""

from __future__ import annotations

import re

import pytest
import trio

pytestmark = pytest.mark.deadline(150)

DEADLINE = 90  # seconds for streaming through the relay (relayed set-up is slower)
PLAY_SECONDS = 1.5  # of video the browser must have played
PLAY_TIMEOUT = 60_000  # ms for the player page to get there

# Keeps every RTCPeerConnection the page makes, and the configuration it got, for getStats.
RECORD_PEERS = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(config, ...rest) {
      super(config, ...rest);
      window.__peers.push({ pc: this, config });
    }
  };
})();
"""

# The browser's selected candidate pair (transport.selectedCandidatePairId) and its candidates.
SELECTED_PAIR = """async () => {
  const { pc, config } = window.__peers[window.__peers.length - 1];
  const stats = await pc.getStats();
  let transport = null;
  stats.forEach((report) => { if (report.type === 'transport') transport = report; });
  const pair = stats.get(transport.selectedCandidatePairId);
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  return {
    policy: config.iceTransportPolicy,
    urls: config.iceServers.map((server) => server.urls),
    pair: pair.state,
    local: [local.candidateType, local.address, local.relayProtocol ?? null],
    remote: [remote.candidateType, remote.address],
    bytesReceived: transport.bytesReceived,
    peers: window.__peers.length,
  };
}"""


def _candidates(sdp: str) -> list[list[str]]:
    """The a=candidate lines of an SDP, split into fields."""
    return [line.split() for line in sdp.splitlines() if line.startswith("a=candidate:")]


def _allocations(log: list[str], username: str) -> int:
    """Successful TURN allocations coturn logged for `username`."""
    return sum(
        1
        for line in log
        if f"user <{username}>" in line and re.search(r"ALLOCATE processed, success", line)
    )


async def test_python_viewer_streams_through_turn_only(
    tmp_path, sample_torrent, coturn, open_playable, open_viewer
):
    relay = {"ice_servers": [coturn.ice_server("udp")], "ice_transport_policy": "relay"}
    sdps: list[str] = []
    got = {}
    with trio.fail_after(DEADLINE):
        async with open_playable(tmp_path, *sample_torrent, **relay) as playable:
            _, url, _, task = playable
            async with (
                open_viewer(url) as viewer,
                viewer.stream(task["id"], playable.file_index, sdps=sdps) as (_, client),
            ):
                for name in playable.hls_files:
                    got[name] = await client.get(name)
            files = {name: (playable.hls_root / name).read_bytes() for name in got}

    assert {name: (status, body) for name, (status, _, body) in got.items()} == {
        name: (200, data) for name, data in files.items()
    }
    # Relay only on both ends: every candidate offered and answered is coturn's relay address,
    # so whatever pair ICE chose runs through coturn.
    offer, answer = sdps
    for sdp in (offer, answer):
        candidates = _candidates(sdp)
        assert candidates, sdp
        assert {(c[4], c[7]) for c in candidates} == {("127.0.0.1", "relay")}, sdp
    assert _allocations(coturn.log, coturn.username) >= 2, "\n".join(coturn.log[-40:])


@pytest.mark.browser
async def test_chromium_player_plays_through_turn_only(
    tmp_path, sample_torrent, coturn, open_playable, page
):
    relay = {"ice_servers": [coturn.ice_server("udp")], "ice_transport_policy": "relay"}
    with trio.fail_after(DEADLINE):
        async with open_playable(tmp_path, *sample_torrent, **relay) as playable:
            a, url, worker, task = playable
            before = dict(a.sessions.relayed)
            await page.run(lambda p: p.add_init_script(RECORD_PEERS))
            await page.goto(f"{url}/player.html?id={task['id']}&file={playable.file_index}")
            await page.wait_for_function(
                f"document.getElementById('video').currentTime > {PLAY_SECONDS}",
                within_ms=PLAY_TIMEOUT,
            )
            selected = await page.evaluate(SELECTED_PAIR)
            served = worker.rtc.stats["total"]
            relayed = {name: a.sessions.relayed[name] - before[name] for name in before}

    assert selected["policy"] == "relay", (selected, page.console)
    assert selected["urls"] == [coturn.ice_server("udp")["urls"]]
    assert selected["pair"] == "succeeded"
    assert selected["local"] == ["relay", "127.0.0.1", "udp"], selected
    assert selected["remote"] == ["relay", "127.0.0.1"], selected
    assert selected["bytesReceived"] > 0
    # The page signaled through A (offer out, answer back, its trickled candidates in) and
    # fetched the playlist and the first segment from B.
    assert relayed["offer"] == relayed["answer"] == 1, relayed
    assert relayed["candidate_in"] >= 1, relayed
    assert served["paths"].get("index.m3u8", 0) >= 1
    assert served["paths"].get(playable.hls_files[1], 0) == 1
    assert _allocations(coturn.log, coturn.username) >= 2, "\n".join(coturn.log[-40:])
