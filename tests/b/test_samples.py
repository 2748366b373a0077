from urllib.parse import parse_qs, urlsplit

import libtorrent as lt
import pytest
import trio

from torrentm3u8_b.ffmpeg import TranscodeError, ffprobe_exe, probe
from torrentm3u8_b.samples import magnet_for, make_sample, make_torrent
from torrentm3u8_b.seeder import open_seeder


@pytest.mark.parametrize(
    ("name", "video", "audio"),
    [
        ("h264_aac", "h264", "aac"),
        ("h264_opus", "h264", "opus"),
        ("vp9_opus", "vp9", "opus"),
        ("mpeg4_mp3", "mpeg4", "mp3"),
        ("h264_silent", "h264", None),
    ],
)
async def test_samples_hold_what_was_asked(media, name, video, audio):
    info = await probe(str(media[name]))
    assert (info.video_codec, info.audio_codec) == (video, audio)
    assert (info.width, info.height) == (320, 240)


async def test_sample_length_and_keyframes(tmp_path):
    path = await make_sample(tmp_path / "k.mp4", seconds=5, size="160x120")
    info = await probe(str(path))
    assert info.duration == pytest.approx(5, abs=0.1)
    if ffprobe_exe() is None:
        pytest.skip("no ffprobe next to ffmpeg")
    command = [ffprobe_exe(), "-v", "error", "-select_streams", "v", "-skip_frame", "nokey"]
    command += ["-show_entries", "frame=pts_time", "-of", "default=nw=1:nk=1", str(path)]
    frames = await trio.run_process(command, capture_stdout=True)
    keyframes = [float(t) for t in frames.stdout.decode().split()]
    assert keyframes == pytest.approx([0, 2, 4], abs=0.05)  # a 2 s GOP


async def test_a_bad_codec_raises_transcode_error(tmp_path):
    with pytest.raises(TranscodeError, match=r"no-such-codec|Encoder not found"):
        await make_sample(tmp_path / "x.mp4", seconds=1, vcodec="no-such-codec")


def test_torrent_and_magnet_of_a_directory(show):
    torrent = make_torrent(show, trackers=["http://127.0.0.1:9/announce"])
    info = lt.torrent_info(lt.bdecode(torrent))
    layout = info.layout()
    paths = {
        layout.file_path(i)
        for i in range(layout.num_files())
        if not layout.file_flags(i) & lt.file_storage.flag_pad_file
    }
    assert paths == {"show/ep1.mp4", "show/ep2.avi", "show/notes.txt"}
    assert info.info_hashes().has_v1() and info.info_hashes().has_v2()  # hybrid

    magnet = magnet_for(torrent, name="My show", peers=[("127.0.0.1", 6881)])
    query = parse_qs(urlsplit(magnet).query)
    assert query["dn"] == ["My show"]
    assert query["x.pe"] == ["127.0.0.1:6881"]
    assert query["tr"] == ["http://127.0.0.1:9/announce"]
    params = lt.parse_magnet_uri(magnet)
    assert params.info_hashes.v1 == info.info_hashes().v1
    assert params.info_hashes.v2 == info.info_hashes().v2
    assert params.peers == [("127.0.0.1", 6881)]


async def test_seeder_listens_on_loopback_and_names_itself_in_its_magnets(show):
    torrent = make_torrent(show)
    async with open_seeder(torrent, show.parent) as seeder:
        assert seeder.port > 0
        assert f"x.pe=127.0.0.1:{seeder.port}" in seeder.magnet()
        assert seeder.uploaded_bytes() == 0
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream("127.0.0.1", seeder.port)
        await stream.aclose()
