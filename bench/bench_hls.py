"""make_hls next to the plain FFmpeg command line, on the same file: remux and re-encode.

    python bench/bench_hls.py [--seconds 60] [--size 1280x720] [--rounds 2]

The source is a sample H.264/AAC MP4. "remux" is the stream copy `plan` picks for it;
"re-encode" forces libx264 + AAC (what VP9, MPEG-4, HEVC... get). The baseline is the same
FFmpeg arguments run directly, without probing, progress parsing, checking and the atomic
move make_hls adds. Prints times, the ratio and the speed in x realtime. Never asserts.
"""

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import trio

from torrentm3u8_b.ffmpeg import ffmpeg_exe
from torrentm3u8_b.samples import make_sample
from torrentm3u8_b.transcode import hls_command, make_hls


def plain_ffmpeg(source: Path, out_dir: Path, mode: str) -> float:
    out_dir.mkdir(parents=True)
    command = hls_command(ffmpeg_exe(), str(source), out_dir, mode)
    at = command.index("-progress")
    del command[at : at + 2]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


async def with_make_hls(source: Path, out_dir: Path, mode: str) -> float:
    start = time.perf_counter()
    await make_hls(str(source), out_dir, mode=mode)
    return time.perf_counter() - start


async def main(seconds: int, size: str, rounds: int) -> None:
    print(f"ffmpeg: {ffmpeg_exe()}")
    with tempfile.TemporaryDirectory(prefix="bench-hls-") as tmp:
        root = Path(tmp)
        began = time.perf_counter()
        source = await make_sample(root / "source.mp4", seconds=seconds, size=size)
        print(f"source: {seconds} s {size} H.264/AAC, made in {time.perf_counter() - began:.1f} s")
        for mode, label in (("copy", "remux"), ("full", "re-encode")):
            plain, ours = [], []
            for n in range(rounds):
                plain_dir, b_dir = root / f"plain-{mode}-{n}", root / f"b-{mode}-{n}"
                plain.append(await trio.to_thread.run_sync(plain_ffmpeg, source, plain_dir, mode))
                ours.append(await with_make_hls(source, b_dir, mode))
                await trio.to_thread.run_sync(shutil.rmtree, plain_dir)
                await trio.to_thread.run_sync(shutil.rmtree, b_dir)
            plain_s, ours_s = statistics.median(plain), statistics.median(ours)
            print(
                f"{label:9}: plain ffmpeg {plain_s:.2f} s ({seconds / plain_s:.1f}x realtime), "
                f"make_hls {ours_s:.2f} s ({seconds / ours_s:.1f}x realtime), "
                f"ratio {ours_s / plain_s:.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    trio.run(main, args.seconds, args.size, args.rounds)
