"""B's libtorrent session against a real seeder, everything on 127.0.0.1."""

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import libtorrent as lt
import pytest
import trio
import trio.testing

from torrentm3u8_b.ffmpeg import probe
from torrentm3u8_b.paths import safe_relpath
from torrentm3u8_b.samples import magnet_for, make_torrent
from torrentm3u8_b.seeder import open_seeder
from torrentm3u8_b.torrent import Torrent
from torrentm3u8_b.torrents import TorrentError, TorrentSettings, open_torrent_session
from torrentm3u8_b.transcode import make_hls

NETWORK_DEADLINE = 30  # seconds: a hang fails fast
BLOCK = 16 * 1024  # bytes: the unit libtorrent requests and records in resume data


def test_loopback_only_settings():
    pack = TorrentSettings(loopback_only=True, upload_limit=1000).settings_pack()
    assert pack["listen_interfaces"] == "127.0.0.1:0"
    assert pack["outgoing_interfaces"] == "127.0.0.1"
    assert pack["dht_bootstrap_nodes"] == ""
    for off in ("enable_dht", "enable_lsd", "enable_upnp", "enable_natpmp", "enable_ip_notifier"):
        assert pack[off] is False
    assert pack["enable_outgoing_utp"] is pack["enable_incoming_utp"] is False
    assert pack["allow_multiple_connections_per_ip"] is True
    assert pack["ignore_limits_on_local_network"] is False
    assert pack["upload_rate_limit"] == 1000
    assert pack["min_reconnect_time"] == 1

    production = TorrentSettings().settings_pack()
    assert production["enable_dht"] and production["enable_lsd"] and production["enable_upnp"]
    assert production["listen_interfaces"] == "0.0.0.0:6881,[::]:6881"
    with pytest.raises(ValueError, match="loopback_only"):
        TorrentSettings(loopback_only=True, listen_interfaces="0.0.0.0:6881").settings_pack()


async def test_the_session_really_runs_with_those_settings(leecher):
    applied = leecher._session.get_settings()  # what libtorrent uses, not what we asked
    assert not applied["enable_dht"] and not applied["enable_lsd"]
    assert not applied["enable_upnp"] and not applied["enable_natpmp"]
    assert applied["listen_interfaces"] == "127.0.0.1:0"
    with trio.fail_after(5):
        await (await trio.open_tcp_stream("127.0.0.1", leecher.listen_port)).aclose()


async def test_magnet_to_hls_of_only_the_videos(leecher, show, show_seeder, tmp_path):
    torrent = lt.torrent_info(lt.bdecode(make_torrent(show)))
    save = tmp_path / "dl"
    with trio.fail_after(NETWORK_DEADLINE):
        t = await leecher.add_magnet("t1", show_seeder.magnet(), save)
        await t.wait_metadata()
        info = t.info()
        assert info["name"] == "show"
        assert info["info_hash"] == str(torrent.info_hashes().v1)
        assert info["trackers"] == []
        files = {f["path"]: f for f in info["files"]}  # no .pad/ files
        assert {path: f["is_video"] for path, f in files.items()} == {
            "show/ep1.mp4": True,
            "show/ep2.avi": True,
            "show/notes.txt": False,
        }
        for path, f in files.items():
            assert f["size"] == (show.parent / path).stat().st_size
        videos = [f["index"] for f in info["files"] if f["is_video"]]

        t.select_files(videos)
        await t.wait_complete()

        status = t.status()
        wanted = sum(f["size"] for f in info["files"] if f["is_video"])
        assert status["downloaded"] == status["total"] == wanted
        assert (status["percent"], status["eta"], status["error"]) == (100.0, 0, None)
        assert status["state"] in ("finished", "seeding")
        assert not (save / "show" / "notes.txt").exists()
        for index in videos:
            path = t.file_disk_path(index)
            assert path.is_relative_to(save)
            source = show.parent / files[path.relative_to(save).as_posix()]["path"]
            assert path.read_bytes() == source.read_bytes()
            result = await make_hls(str(path), tmp_path / "hls" / str(index))
            assert result.duration == pytest.approx((await probe(str(source))).duration, abs=1)


async def test_pieces_can_be_read_from_libtorrent(leecher, show, show_seeder, tmp_path):
    with trio.fail_after(NETWORK_DEADLINE):
        t = await leecher.add_magnet("t1", show_seeder.magnet(), tmp_path / "dl")
        await t.wait_metadata()
        t.set_sequential(True)
        t.select_files([0])
        piece, start = t.map_file(0, 0)
        t.set_piece_deadline(piece, 100)
        await t.wait_complete()
        assert t.have_piece(piece)
        data = await t.read_piece(piece)
    assert len(data) == t.piece_length
    source = (show / "ep1.mp4").read_bytes()
    assert data[start:] == source[: len(data) - start]
    assert t.map_file(0, t.piece_length + 5) == (piece + 1, start + 5)


async def test_wait_piece_returns_when_the_piece_is_in_and_fails_when_removed(
    leecher, show, show_seeder, tmp_path
):
    with trio.fail_after(NETWORK_DEADLINE):
        t = await leecher.add_magnet("t1", show_seeder.magnet(), tmp_path / "dl")
        await t.wait_metadata()
        videos, notes = 0, next(f["index"] for f in t.info()["files"] if not f["is_video"])
        last, _ = t.map_file(videos, (show / "ep1.mp4").stat().st_size - 1)
        unwanted, _ = t.map_file(notes, 0)
        assert not t.have_piece(last)
        t.select_files([videos])
        await t.wait_piece(last)  # woken by its piece_finished_alert
        assert t.have_piece(last)
        await t.wait_piece(last)  # already there: at once

        errors = []

        async def wait_unwanted() -> None:
            with pytest.raises(TorrentError) as caught:
                await t.wait_piece(unwanted)  # never downloaded: not selected
            errors.append(str(caught.value))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_unwanted)
            await trio.testing.wait_all_tasks_blocked()
            await leecher.remove("t1")
    assert errors == ["the torrent was removed"]


def v1_torrent(files: list[tuple[list[bytes], bytes]], name: bytes, links=None) -> bytes:
    """A v1 .torrent built by hand, so file names can be anything. links: {path: target}
    adds BEP 47 symlink entries."""
    piece_size = 16384
    data = b"".join(content for _, content in files)
    pieces = b"".join(
        hashlib.sha1(data[i : i + piece_size]).digest() for i in range(0, len(data), piece_size)
    )
    info = {b"name": name, b"piece length": piece_size, b"pieces": pieces}
    if len(files) == 1 and not files[0][0]:
        info[b"length"] = len(data)
    else:
        info[b"files"] = [{b"length": len(content), b"path": path} for path, content in files]
    for path, target in (links or {}).items():
        link = {b"length": 0, b"path": [path], b"attr": b"l", b"symlink path": target}
        info[b"files"].append(link)
    return lt.bencode({b"info": info})


HOSTILE = {
    "multi-file": (
        b"C:show",
        [
            [b"..", b"..", b"..", b"escape.txt"],
            [b"/etc", b"cron.d", b"evil"],
            [b"sub", b"..", b"..", b"..", b"up.mp4"],
            [b"a\\..\\..\\b.mp4"],
            [b"ctrl\x01\x7f\xc2\x85.mp4"],
            [b".", b"", b"dots.mp4"],
        ],
    ),
    "single-file": (b"../../escape.mp4", [[]]),
}


@pytest.mark.parametrize("kind", HOSTILE)
async def test_hostile_file_names_write_nothing_outside_save_path(leecher, tmp_path, kind):
    name, paths = HOSTILE[kind]
    files = [(path, os.urandom(10_000 + 1000 * i)) for i, path in enumerate(paths)]
    torrent = v1_torrent(files, name)
    seed = tmp_path / "seed"
    layout = lt.torrent_info(lt.bdecode(torrent)).layout()
    for index, (_, content) in enumerate(files):  # where the seeder's libtorrent looks
        path = seed / layout.file_path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    save = tmp_path / "deep" / "er" / "dl"
    ours = {tmp_path / "seed", tmp_path / "resume", save}

    with trio.fail_after(NETWORK_DEADLINE):
        async with open_seeder(torrent, seed) as seeder:
            t = await leecher.add_magnet("evil", seeder.magnet(), save)
            await t.wait_metadata()
            info = t.info()
            t.select_files([f["index"] for f in info["files"]])
            await t.wait_complete()

    for f in info["files"]:
        assert str(safe_relpath(f["path"])) == f["path"]
        assert not f["path"].startswith(("C:", "/")) and ".." not in f["path"].split("/")
        disk = t.file_disk_path(f["index"])
        assert disk.resolve().is_relative_to(save.resolve())
        assert disk.read_bytes() == files[f["index"]][1]
    strays = [
        p for p in tmp_path.rglob("*") if p.is_file() and not any(p.is_relative_to(d) for d in ours)
    ]
    assert strays == []


async def test_symlinks_in_a_torrent_cannot_point_outside(leecher, tmp_path):
    files = [([b"a.mp4"], os.urandom(20_000))]
    links = {b"up.mp4": [b"..", b"..", b"..", b"etc", b"passwd"], b"abs.mp4": [b"/etc/passwd"]}
    torrent = v1_torrent(files, b"show", links)
    (tmp_path / "seed" / "show").mkdir(parents=True)
    (tmp_path / "seed" / "show" / "a.mp4").write_bytes(files[0][1])
    save = tmp_path / "dl"
    with trio.fail_after(NETWORK_DEADLINE):
        async with open_seeder(torrent, tmp_path / "seed") as seeder:
            t = await leecher.add_magnet("links", seeder.magnet(), save)
            try:
                await t.wait_metadata()
                assert [f["path"] for f in t.info()["files"]] == ["show/a.mp4"]  # no links
                t.select_files([0])
                await t.wait_complete()
            except TorrentError as exc:
                # libtorrent points such links at themselves, then trips over the loop.
                assert "Too many levels of symbolic links" in str(exc)
    links_on_disk = [p for p in save.rglob("*") if p.is_symlink()]
    assert links_on_disk  # libtorrent made them...
    for link in links_on_disk:  # ...but none leads out of the download directory
        target = await trio.to_thread.run_sync(os.path.realpath, link)
        assert Path(target).is_relative_to(save)


async def test_resume_data_round_trip(tmp_path, settings):
    size, piece = 4 * 1024 * 1024, 64 * 1024  # bytes
    (tmp_path / "seed").mkdir()
    source = tmp_path / "seed" / "movie.mkv"
    source.write_bytes(os.urandom(size))
    torrent = make_torrent(source, piece_size=piece)
    resume_dir, save = tmp_path / "resume", tmp_path / "dl"

    with trio.fail_after(NETWORK_DEADLINE):
        async with open_seeder(torrent, source.parent, upload_limit=size // 2) as seeder:
            async with open_torrent_session(settings, resume_dir) as ts:
                t = await ts.add_magnet("r1", seeder.magnet(), save)
                await t.wait_metadata()
                t.select_files([0])
                # No event says "50 %": poll it (the seeder sends ~2 MB/s, ~1 s to go).
                while t.status()["percent"] < 50:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            # Leaving the session saved resume data.
            data = await trio.Path(resume_dir / "r1.resume").read_bytes()
            have = stored_bytes(lt.read_resume_data(data), piece)
            first_run = seeder.uploaded_bytes()
            assert size * 0.45 <= have <= first_run < size

            seeder.set_upload_limit(None)
            async with open_torrent_session(settings, resume_dir) as ts:
                assert await ts.load_resume_data("r1") == data
                t = await ts.add_magnet("r1", seeder.magnet(), save, resume_data=data)
                await t.wait_metadata()
                t.select_files([0])
                await t.wait_complete()
                assert t.status()["downloaded"] == size
            second_run = seeder.uploaded_bytes() - first_run

    assert (save / "movie.mkv").read_bytes() == source.read_bytes()
    # Only what the resume data lacked was sent again (give or take blocks in flight).
    assert abs(second_run - (size - have)) <= 4 * piece


def stored_bytes(params: lt.add_torrent_params, piece: int) -> int:
    """Bytes resume data says are on disk: whole pieces, and the blocks of unfinished ones
    (libtorrent keeps those too, so they are not requested again)."""
    blocks = sum(sum(map(bool, bits)) for bits in params.unfinished_pieces.values())
    return sum(params.have_pieces) * piece + blocks * BLOCK


async def test_resume_data_of_another_torrent_is_ignored(
    leecher, show, show_seeder, tmp_path, caplog
):
    other = tmp_path / "other.mkv"
    other.write_bytes(b"x" * 100_000)
    with trio.fail_after(NETWORK_DEADLINE):
        async with open_torrent_session(TorrentSettings(loopback_only=True)) as ts:
            lone = await ts.add_magnet("o", magnet_for(make_torrent(other)), tmp_path / "o")
            wrong = await lone.save_resume_data()
        t = await leecher.add_magnet("t1", show_seeder.magnet(), tmp_path / "dl", resume_data=wrong)
        await t.wait_metadata()
        assert t.info()["name"] == "show"
        t2 = await leecher.add_magnet(
            "t2", magnet_for(make_torrent(other)), tmp_path / "o2", resume_data=b"garbage"
        )
        assert t2.status()["state"] == "downloading_metadata"
    ignored = [r.getMessage() for r in caplog.records if "ignoring resume data" in r.getMessage()]
    assert ignored[0] == "ignoring resume data of task t1: it is for another torrent"
    assert ignored[1].startswith("ignoring resume data of task t2: ")
    assert len(ignored) == 2


async def test_a_magnet_nobody_seeds_gets_no_metadata(leecher, show, tmp_path):
    magnet = magnet_for(make_torrent(show))  # no peer, no tracker, no DHT
    t = await leecher.add_magnet("lonely", magnet, tmp_path / "dl")
    with trio.move_on_after(1) as waited:
        await t.wait_metadata()
    assert waited.cancelled_caught
    assert t.status()["state"] == "downloading_metadata"
    assert t.status()["percent"] == 0.0 and t.status()["eta"] is None
    with pytest.raises(TorrentError, match="no metadata yet"):
        t.info()
    with pytest.raises(TorrentError, match="no metadata yet"):
        t.select_files([0])


async def test_bad_magnets_and_duplicates_are_refused(leecher, show_seeder, tmp_path):
    with pytest.raises(TorrentError, match="not a magnet link: unsupported URL protocol"):
        await leecher.add_magnet("x", "http://example.com/a.torrent", tmp_path)
    with pytest.raises(TorrentError, match="not a magnet link: missing info-hash"):
        await leecher.add_magnet("x", "magnet:?dn=nothing", tmp_path)
    await leecher.add_magnet("t1", show_seeder.magnet(), tmp_path / "a")
    with pytest.raises(TorrentError, match="task t1 already has a torrent"):
        await leecher.add_magnet("t1", show_seeder.magnet(), tmp_path / "a")
    with pytest.raises(TorrentError, match="torrent already exists in session"):
        await leecher.add_magnet("t2", show_seeder.magnet(), tmp_path / "b")
    assert leecher.keys() == ["t1"]


async def test_selecting_files_that_are_not_there_is_refused(leecher, show_seeder, tmp_path):
    with trio.fail_after(NETWORK_DEADLINE):
        t = await leecher.add_magnet("t1", show_seeder.magnet(), tmp_path / "dl")
        await t.wait_metadata()
    listed = [f["index"] for f in t.info()["files"]]
    pad = min(set(range(max(listed))) - set(listed))  # hybrid torrents align files with pads
    for bad in ([99], [-1], [pad], ["0"], [True], []):
        with pytest.raises(ValueError, match="file"):
            t.select_files(bad)
    with pytest.raises(TorrentError, match="select_files"):
        await t.wait_complete()


async def test_a_file_error_fails_the_torrent_with_libtorrents_message(
    leecher, show_seeder, tmp_path
):
    save = tmp_path / "dl"
    save.mkdir()
    (save / "show").write_text("a file where the torrent's directory goes")
    with trio.fail_after(NETWORK_DEADLINE):
        t = await leecher.add_magnet("t1", show_seeder.magnet(), save)
        with pytest.raises(TorrentError, match="Not a directory") as caught:
            # libtorrent may stumble when it looks for existing files, or when it writes.
            await t.wait_metadata()
            t.select_files([0])
            await t.wait_complete()
    assert t.status()["error"] == str(caught.value)


async def test_remove_deletes_the_files_and_the_resume_file(leecher, show_seeder, tmp_path):
    save = tmp_path / "dl"
    with trio.fail_after(NETWORK_DEADLINE):
        t = await leecher.add_magnet("t1", show_seeder.magnet(), save)
        await t.wait_metadata()
        t.select_files([0])
        await t.wait_complete()
        assert (save / "show" / "ep1.mp4").exists()
        assert leecher.resume_path("t1").exists()  # wait_complete saved it

        await leecher.remove("t1", delete_files=True)

        assert "t1" not in leecher
        assert not (save / "show" / "ep1.mp4").exists()
        assert not leecher.resume_path("t1").exists()
        with pytest.raises(TorrentError, match="the torrent was removed"):
            t.status()
        await leecher.remove("t1")  # nothing left to remove: no error
        again = await leecher.add_magnet("t1", show_seeder.magnet(), save)
        await again.wait_metadata()
        await leecher.remove("t1")
        assert leecher.keys() == []


async def test_removing_a_torrent_releases_its_waiters(leecher, show, tmp_path):
    lonely = await leecher.add_magnet("t1", magnet_for(make_torrent(show)), tmp_path / "dl")
    errors = []

    async def wait() -> None:
        with pytest.raises(TorrentError) as caught:
            await lonely.wait_metadata()
        errors.append(str(caught.value))

    with trio.fail_after(NETWORK_DEADLINE):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            await leecher.remove("t1", delete_files=True)  # no metadata: nothing to delete
    assert errors == ["the torrent was removed"]


async def test_ending_the_session_saves_resume_data_even_when_cancelled(
    settings, show, show_seeder, tmp_path
):
    errors = []
    with trio.fail_after(NETWORK_DEADLINE):
        async with trio.open_nursery() as outside:
            with trio.CancelScope() as scope:
                async with open_torrent_session(settings, tmp_path / "resume") as ts:
                    t = await ts.add_magnet("t1", show_seeder.magnet(), tmp_path / "dl")
                    await t.wait_metadata()
                    (tmp_path / "other.mkv").write_bytes(b"other" * 10_000)
                    other = magnet_for(make_torrent(tmp_path / "other.mkv"))
                    lonely = await ts.add_magnet("t2", other, tmp_path / "dl2")

                    async def wait() -> None:
                        with pytest.raises(TorrentError) as caught:
                            await lonely.wait_metadata()
                        errors.append(str(caught.value))

                    outside.start_soon(wait)
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()
                    await trio.sleep_forever()
    assert scope.cancelled_caught
    params = lt.read_resume_data((tmp_path / "resume" / "t1.resume").read_bytes())
    assert params.ti is not None and params.ti.name() == "show"
    assert (tmp_path / "resume" / "t2.resume").exists()  # a magnet's resume data: no info
    with pytest.raises(TorrentError, match="the torrent session is closed"):
        t.status()
    assert errors == ["the torrent session is closed"]


def test_progress_never_passes_100_percent(tmp_path):
    # libtorrent's total_wanted_done counts whole pieces: one at the edge of the wanted file
    # also holds bytes of an unwanted neighbour (seen in a run: 100.35 %, then 100.0 %).
    status = SimpleNamespace(
        total_wanted=1000,
        total_wanted_done=1035,
        download_payload_rate=500,
        upload_payload_rate=0,
        num_peers=1,
        state=SimpleNamespace(name="downloading"),
        errc=SimpleNamespace(value=lambda: 0, message=lambda: ""),
    )
    handle = SimpleNamespace(status=lambda: status)
    torrent = Torrent("t", handle, tmp_path, "ab" * 20, renamed={}, store_resume=None)
    got = torrent.status()
    assert (got["percent"], got["downloaded"], got["total"], got["eta"]) == (100.0, 1000, 1000, 0)
    status.total_wanted_done = 990
    assert (torrent.status()["percent"], torrent.status()["eta"]) == (99.0, 1)
