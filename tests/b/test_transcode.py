import random
import re
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import imageio_ffmpeg
import pytest
import trio

from torrentm3u8_b.ffmpeg import (
    FFMPEG_ENV,
    MediaInfo,
    TranscodeError,
    ffmpeg_exe,
    ffprobe_exe,
    probe,
    probe_with_ffmpeg,
    probe_with_ffprobe,
)
from torrentm3u8_b.samples import make_sample
from torrentm3u8_b.transcode import (
    PLAYLIST,
    SEGMENT_SECONDS,
    HlsResult,
    is_complete_rendition,
    make_hls,
    plan,
    playlist_segments,
    start_time,
)

GARBAGE = random.Random(0).randbytes(50_000)  # fixed: FFmpeg finds a format in some random bytes


def listed_segments(out_dir: Path) -> list[tuple[str, float]]:
    lines = (out_dir / PLAYLIST).read_text().splitlines()
    assert lines[0] == "#EXTM3U"
    assert lines[-1] == "#EXT-X-ENDLIST"
    return [
        (lines[i + 1], float(re.match(r"#EXTINF:([\d.]+),", line)[1]))
        for i, line in enumerate(lines)
        if line.startswith("#EXTINF:")
    ]


async def check_segments_decode(out_dir: Path, segments) -> None:
    for name, _ in segments:
        result = await trio.run_process(
            [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(out_dir / name), "-f", "null", "-"],
            capture_stderr=True,
            check=False,
        )
        assert result.returncode == 0 and not result.stderr, result.stderr


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("h264_aac", "copy"),
        ("h264_silent", "copy"),
        ("h264_opus", "audio"),
        ("vp9_opus", "full"),
        ("mpeg4_mp3", "full"),
    ],
)
async def test_make_hls_gives_h264_aac_segments_of_the_whole_file(media, tmp_path, name, mode):
    source = await probe(str(media[name]))
    assert plan(source) == mode
    progress = []
    out = tmp_path / "hls" / "0"

    result = await make_hls(str(media[name]), out, on_progress=progress.append)

    segments = listed_segments(out)
    assert result == HlsResult(
        playlist="index.m3u8",
        duration=pytest.approx(sum(d for _, d in segments), abs=1e-3),
        segments=len(segments),
    )
    assert result.duration == pytest.approx(source.duration, abs=1.0)
    assert all(0 < seconds <= SEGMENT_SECONDS + 2 for _, seconds in segments)
    assert sorted(p.name for p in out.iterdir()) == sorted([PLAYLIST] + [n for n, _ in segments])
    assert [p.name for p in out.parent.iterdir()] == ["0"]  # no temp directory left
    await check_segments_decode(out, segments)
    first = await probe(str(out / segments[0][0]))
    assert first.video_codec == "h264"
    assert first.audio_codec == (None if name == "h264_silent" else "aac")
    assert progress == sorted(progress) and progress[-1] == 100.0


async def test_re_encoding_cuts_segments_at_the_segment_length(tmp_path):
    source = tmp_path / "one-keyframe.mp4"  # 9 s, a keyframe at 0 only
    clip = ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=9"]
    await trio.run_process(
        [ffmpeg_exe(), "-v", "error", *clip, "-c:v", "libx264", "-g", "1000", str(source)]
    )
    await make_hls(str(source), tmp_path / "copied", mode="copy")
    assert [d for _, d in listed_segments(tmp_path / "copied")] == pytest.approx([9], abs=0.1)

    result = await make_hls(str(source), tmp_path / "encoded", mode="full")
    durations = [d for _, d in listed_segments(tmp_path / "encoded")]
    assert durations == pytest.approx([4, 4, 1], abs=0.1)
    assert result.segments == 3


@pytest.fixture
def fresh_ffmpeg_choice():
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()
    yield
    ffmpeg_exe.cache_clear()  # the next caller looks again, with the real PATH
    ffprobe_exe.cache_clear()


def test_which_ffmpeg(tmp_path, monkeypatch, fresh_ffmpeg_choice):
    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\necho ' V....D mpeg4   MPEG-4 part 2'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(FFMPEG_ENV, raising=False)
    assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()  # no libx264 on PATH
    assert ffprobe_exe() is None  # imageio-ffmpeg has none

    fake.write_text("#!/bin/sh\necho ' V....D libx264   libx264 H.264'\n")
    (tmp_path / "ffprobe").write_text("#!/bin/sh\n")
    (tmp_path / "ffprobe").chmod(0o755)
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()
    assert ffmpeg_exe() == str(fake)
    assert ffprobe_exe() == str(tmp_path / "ffprobe")

    monkeypatch.setenv(FFMPEG_ENV, "/opt/ffmpeg/bin/ffmpeg")
    ffmpeg_exe.cache_clear()
    assert ffmpeg_exe() == "/opt/ffmpeg/bin/ffmpeg"


def test_plan():
    assert plan(MediaInfo(10, "h264", "aac")) == "copy"
    assert plan(MediaInfo(10, "h264", "mp3")) == "copy"
    assert plan(MediaInfo(10, "h264", None)) == "copy"
    assert plan(MediaInfo(10, "h264", "ac3")) == "audio"
    assert plan(MediaInfo(10, "hevc", "aac")) == "full"
    assert plan(MediaInfo(None, "vp9", None)) == "full"
    with pytest.raises(TranscodeError, match="no video track"):
        plan(MediaInfo(10, None, "aac"))


@pytest.mark.parametrize("name", ["h264_aac", "vp9_opus", "mpeg4_mp3", "h264_silent"])
async def test_both_probes_agree(media, name):
    if ffprobe_exe() is None:
        pytest.skip("no ffprobe next to ffmpeg")
    by_ffprobe = await probe_with_ffprobe(ffprobe_exe(), str(media[name]))
    by_ffmpeg = await probe_with_ffmpeg(ffmpeg_exe(), str(media[name]))
    assert by_ffmpeg == MediaInfo(
        duration=pytest.approx(by_ffprobe.duration, abs=0.02),
        video_codec=by_ffprobe.video_codec,
        audio_codec=by_ffprobe.audio_codec,
        width=320,
        height=240,
    )


async def test_cover_art_is_not_taken_for_the_video(media, tmp_path):
    cover = tmp_path / "cover.png"
    red = ["-f", "lavfi", "-i", "color=red:size=64x64", "-frames:v", "1"]
    await trio.run_process([ffmpeg_exe(), "-v", "error", *red, str(cover)])
    clip = tmp_path / "with-cover.mkv"
    attach = ["-attach", str(cover), "-metadata:s:t", "mimetype=image/png"]
    copy = ["-i", str(media["h264_aac"]), "-map", "0", "-c", "copy"]
    await trio.run_process([ffmpeg_exe(), "-v", "error", *copy, *attach, str(clip)])
    info = await probe(str(clip))
    assert (info.video_codec, info.video_index) == ("h264", 0)
    result = await make_hls(str(clip), tmp_path / "out")
    assert result.duration == pytest.approx(3, abs=1)


@pytest.mark.parametrize("probe_with", ["ffprobe", "ffmpeg"])
async def test_unreadable_media_raises_ffmpegs_message(tmp_path, probe_with):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(GARBAGE)
    if probe_with == "ffprobe":
        if ffprobe_exe() is None:
            pytest.skip("no ffprobe next to ffmpeg")
        with pytest.raises(TranscodeError, match="Invalid data found when processing input"):
            await probe_with_ffprobe(ffprobe_exe(), str(garbage))
    else:
        with pytest.raises(TranscodeError, match="Invalid data found when processing input"):
            await probe_with_ffmpeg(ffmpeg_exe(), str(garbage))


async def test_corrupt_media_fails_and_leaves_nothing_that_looks_complete(media, tmp_path):
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(GARBAGE)
    out = tmp_path / "hls"
    with pytest.raises(TranscodeError, match="Invalid data found when processing input"):
        await make_hls(str(garbage), out)
    assert not out.exists()

    # A cut MP4 keeps its index: FFmpeg exits 0 with one empty, 0 s segment.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(media["h264_aac"].read_bytes()[:5000])
    with pytest.raises(TranscodeError, match=r"no playable HLS \(seg00000.ts lasts 0 s\)"):
        await make_hls(str(cut), out)
    assert not out.exists()
    assert is_complete_rendition(out) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.mp4", "garbage.mkv"]


async def test_ffmpeg_exiting_with_an_error_raises_its_last_error_line(media, tmp_path):
    wrong = MediaInfo(duration=3, video_codec="h264", audio_codec="aac", video_index=5)
    with pytest.raises(TranscodeError) as caught:
        await make_hls(str(media["h264_aac"]), tmp_path / "out", media=wrong)
    message = str(caught.value)
    assert message in {
        "To ignore this, add a trailing '?' to the map.",  # FFmpeg 5
        "Error opening output files: Invalid argument",  # FFmpeg 9
    }
    assert not (tmp_path / "out").exists()


async def test_is_complete_rendition(media, tmp_path):
    out = tmp_path / "hls"
    assert is_complete_rendition(out) is None
    made = await make_hls(str(media["h264_long"]), out)
    assert is_complete_rendition(out) == made

    playlist = (out / PLAYLIST).read_text()
    (out / PLAYLIST).write_text(playlist.replace("#EXT-X-ENDLIST\n", ""))
    assert is_complete_rendition(out) is None
    (out / PLAYLIST).write_text(playlist)
    (out / "seg00001.ts").write_bytes(b"")
    assert is_complete_rendition(out) is None
    (out / "seg00001.ts").unlink()
    assert is_complete_rendition(out) is None
    (out / PLAYLIST).write_text(playlist.replace("seg00001.ts", "../../seg00001.ts"))
    assert is_complete_rendition(out) is None


def test_playlist_segments_reads_each_uri_with_its_extinf():
    text = (
        "#EXTM3U\n#EXT-X-TARGETDURATION:4\nstray.ts\n#EXTINF:4.004,\nseg00000.ts\n"
        "#EXTINF:4,title\n\n  seg00001.ts  \n#EXTINF:four,\nseg00002.ts\n#EXTINF:-1,\n"
        "seg00003.ts\n#EXTINF:2.5,\n#EXT-X-ENDLIST\n"
    )
    assert playlist_segments(text) == [
        ("seg00000.ts", 4.004),
        ("seg00001.ts", 4.0),
        ("seg00002.ts", None),  # unreadable: the caller decides
        ("seg00003.ts", -1.0),
    ]
    assert playlist_segments("") == []


def test_a_rendition_with_an_unreadable_extinf_is_no_rendition(tmp_path):
    (tmp_path / "seg00000.ts").write_bytes(b"G" * 188)
    (tmp_path / PLAYLIST).write_text("#EXTM3U\n#EXTINF:x,\nseg00000.ts\n#EXT-X-ENDLIST\n")
    assert is_complete_rendition(tmp_path) is None
    (tmp_path / PLAYLIST).write_text("#EXTM3U\n#EXTINF:2,\nseg00000.ts\n#EXT-X-ENDLIST\n")
    assert is_complete_rendition(tmp_path) == HlsResult(PLAYLIST, 2.0, 1)


async def keyframes(segment: Path) -> list[float]:
    command = [ffprobe_exe() or "ffprobe", "-v", "error", "-select_streams", "v"]
    command += ["-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", str(segment)]
    result = await trio.run_process(command, capture_stdout=True)
    lines = [line.split(",") for line in result.stdout.decode().split()]
    return [float(line[0]) for line in lines if "K" in line[1]]


@pytest.fixture(scope="module")
def clip16(tmp_path_factory) -> Path:
    """16 s, a keyframe every 2 s."""
    path = tmp_path_factory.mktemp("clip16") / "clip16.mp4"
    trio.run(partial(make_sample, path, seconds=16, size="160x120"))
    return path


@pytest.mark.parametrize(("mode", "low"), [("copy", 8.0), ("full", 9.0)])
async def test_a_seek_rendition_keeps_the_video_timeline(clip16, tmp_path, mode, low):
    main = await make_hls(str(clip16), tmp_path / "main", mode=mode)
    seek = await make_hls(str(clip16), tmp_path / "seek", mode=mode, seek=9.0)

    start = await start_time(tmp_path / "seek" / "seg00000.ts")
    main_start = await start_time(tmp_path / "main" / "seg00000.ts")
    # Copy starts at the keyframe before 9 s (8 s), re-encoding at 9 s; the audio a frame
    # earlier.
    assert low - 0.2 <= start - main_start <= 9.0
    assert seek.duration == pytest.approx(main.duration - (start - main_start), abs=0.5)
    segments = listed_segments(tmp_path / "seek")
    if mode == "full":  # forced keyframes count from the seek, not from 0
        assert len(await keyframes(tmp_path / "seek" / "seg00000.ts")) == 1
        assert [d for _, d in segments] == pytest.approx([4, 3], abs=0.1)
    else:
        assert [d for _, d in segments] == pytest.approx([4, 4], abs=0.1)


async def test_start_time_of_something_unreadable_is_none(tmp_path):
    (tmp_path / "junk.ts").write_bytes(GARBAGE[:100])
    assert await start_time(tmp_path / "junk.ts") is None
    assert await start_time(tmp_path / "missing.ts") is None


async def test_a_new_rendition_replaces_a_broken_one(media, tmp_path):
    out = tmp_path / "hls"
    out.mkdir()
    (out / PLAYLIST).write_text("#EXTM3U\n#EXTINF:4.0,\nseg00000.ts\n")  # a crash left this
    (out / "seg00007.ts").write_bytes(b"stale")
    result = await make_hls(str(media["h264_aac"]), out)
    assert is_complete_rendition(out) == result
    assert not (out / "seg00007.ts").exists()


@asynccontextmanager
async def serve_file(path: Path, requests: list | None = None):
    """HTTP on 127.0.0.1 serving `path` with Range support (like B's later piece reader);
    yields its URL."""
    data = await trio.Path(path).read_bytes()

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                request += chunk
            start, end = 0, len(data) - 1
            for line in request.decode("latin-1").split("\r\n"):
                if line.lower().startswith("range: bytes="):
                    first, _, last = line.split("=", 1)[1].partition("-")
                    start, end = int(first or 0), min(int(last or end), end)
            if requests is not None:
                requests.append((start, end))
            body = data[start : end + 1]
            status = "206 Partial Content" if (start, end) != (0, len(data) - 1) else "200 OK"
            head = (
                f"HTTP/1.1 {status}\r\nAccept-Ranges: bytes\r\nContent-Length: {len(body)}\r\n"
                f"Content-Range: bytes {start}-{end}/{len(data)}\r\nConnection: close\r\n\r\n"
            )
            try:
                await stream.send_all(head.encode() + body)
            except trio.BrokenResourceError:
                pass  # FFmpeg seeks by dropping the connection

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}/{path.name}"
        nursery.cancel_scope.cancel()


async def test_source_can_be_a_range_capable_url_and_an_event_playlist(media, tmp_path):
    # moov at the end: FFmpeg must seek to the tail, which needs -seekable 1 over HTTP.
    tail = tmp_path / "tail.mp4"
    await trio.run_process(
        [ffmpeg_exe(), "-v", "error", "-i", str(media["h264_aac"]), "-c", "copy", str(tail)]
    )
    requests = []
    with trio.fail_after(30):
        async with serve_file(tail, requests) as url:
            result = await make_hls(url, tmp_path / "live", playlist_type="event")
    assert any(start > 0 for start, _ in requests)  # it did seek
    assert result.duration == pytest.approx(3, abs=1)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT" in (tmp_path / "live" / PLAYLIST).read_text()
    assert is_complete_rendition(tmp_path / "live") == result


def child_pids() -> set[int]:
    pids = set()
    for task in Path("/proc/self/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


async def test_cancelling_kills_ffmpeg(tmp_path):
    connected = trio.Event()

    async def never_answer(stream: trio.SocketStream) -> None:
        connected.set()
        await trio.sleep_forever()

    before = child_pids()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1")
            )
            url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/x.mp4"
            info = MediaInfo(duration=60, video_codec="h264", audio_codec="aac")
            nursery.start_soon(lambda: make_hls(url, tmp_path / "out", media=info))
            await connected.wait()  # FFmpeg runs and waits for an answer
            assert child_pids() - before
            nursery.cancel_scope.cancel()
    assert child_pids() - before == set()
    assert list(tmp_path.iterdir()) == []  # no rendition, no temp directory
