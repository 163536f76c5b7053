"""Video I/O: probing, rotation, timestamp resampling, corrupt inputs, browser-playable output."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from steadydancer.errors import SteadyDancerInputError
from steadydancer.video import (
    CONDITION_ENCODING, DISPLAY_ENCODING, MASTER_ENCODING, YUV_BLACK, EncodeSettings, VideoClip, VideoFrame, VideoInfo,
    VideoWriter, audio_codec_args, ffmpeg_exe, iter_video_frames, lit_box, lower_priority, probe_video, read_video,
    rgb_to_yuv420p, write_video,
)


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                   check=True, capture_output=True)


def ffmpeg_info(path: Path) -> str:
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True).stderr.decode()


def indexed_frames(n: int, size=(64, 48)) -> list[np.ndarray]:
    """Frame i is flat grey 8 * i: the index survives H.264 (error << 4 levels)."""
    w, h = size
    return [np.full((h, w, 3), 8 * i, np.uint8) for i in range(n)]


def decoded_index(frame: np.ndarray) -> int:
    return int(round(float(frame[8:-8, 8:-8].mean()) / 8))


def top_level_atoms(path: Path) -> list[str]:
    data = path.read_bytes()
    atoms, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        atoms.append(data[i + 4:i + 8].decode("latin1"))
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        if size < 8:
            break
        i += size
    return atoms


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("video")
    out = {}
    # 30 fps, 30 frames (1 s) whose grey level encodes the frame index.
    out["indexed30"] = write_video(d / "indexed30.mp4", indexed_frames(30), 30)
    # A clip with audio (tone) made by ffmpeg itself, independent of write_video.
    out["with_audio"] = d / "with_audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=2",
           "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out["with_audio"]))
    # Variable frame rate: frames 0-9 every 1/30 s, then a 0.5 s gap, then 10 more.
    out["vfr"] = d / "vfr.mp4"
    vfr_src = d / "vfr_src.mp4"
    write_video(vfr_src, indexed_frames(20), 30)
    ffmpeg("-i", str(vfr_src), "-vf", "setpts='(N/30+gte(N,10)*0.5)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", str(out["vfr"]))
    # Phone-style rotation: coded 64x32 landscape, displayed portrait; red block top-left.
    marked = np.zeros((32, 64, 3), np.uint8)
    marked[:8, :8] = (255, 0, 0)
    plain = write_video(d / "plain.mp4", [marked] * 4, 16)
    out["rotated"] = d / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(out["rotated"]))
    out["one_frame"] = write_video(d / "one.mp4", indexed_frames(1), 16)
    # Broken inputs.
    out["text"] = d / "notes.mp4"
    out["text"].write_text("this is not a video\n")
    out["empty"] = d / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["audio_only"] = d / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(out["audio_only"]))
    # Valid header (moov first), but every sample byte zeroed: no frame decodes.
    data = bytearray(write_video(d / "good.mp4", indexed_frames(10), 16).read_bytes())
    mdat = data.find(b"mdat")
    data[mdat + 4:] = bytes(len(data) - mdat - 4)
    out["no_frames"] = d / "no_frames.mp4"
    out["no_frames"].write_bytes(bytes(data))
    return out


# -- probing --------------------------------------------------------------------------------------


def test_probe_reports_stream_facts(media):
    info = probe_video(media["with_audio"])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.rotation) == (160, 120, 0)
    assert info.fps == pytest.approx(25)
    assert info.duration == pytest.approx(2.0, abs=0.05)
    assert info.num_frames == 50
    assert info.has_audio and info.codec == "h264" and info.audio_codec == "aac"
    assert not probe_video(media["indexed30"]).has_audio and probe_video(media["indexed30"]).audio_codec is None
    assert probe_video(media["indexed30"], count_frames=True).num_frames == 30


def test_a_file_is_probed_once_while_it_stays_the_same(media, tmp_path, monkeypatch):
    import shutil

    import steadydancer.video as video

    runs = []
    real_run = subprocess.run

    def counting_run(cmd, *args, **kwargs):
        runs.append(cmd)
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(video.subprocess, "run", counting_run)
    clip = tmp_path / "clip.mp4"
    shutil.copyfile(media["with_audio"], clip)
    first = probe_video(clip)
    assert probe_video(clip) == first and probe_video(str(clip)).path == str(clip)
    assert len(runs) == 1
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)  # another name of the same file: the same answer, under its own name
    assert probe_video(link).path == str(link) and probe_video(link).duration == first.duration
    assert len(runs) == 1
    shutil.copyfile(media["indexed30"], clip)  # the file changed: probed again, the new answer
    changed = probe_video(clip)
    assert len(runs) == 2 and not changed.has_audio and changed.num_frames != first.num_frames
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    for _ in range(2):  # an error is not kept
        with pytest.raises(SteadyDancerInputError):
            probe_video(broken)
    assert len(runs) == 4


def test_rotation_is_reported_and_applied(media):
    info = probe_video(media["rotated"])
    assert info.rotation == 90
    assert (info.width, info.height) == (32, 64)  # display size, not coded size
    clip = read_video(media["rotated"], fps=0)
    assert clip.frames.shape[1:] == (64, 32, 3)
    red = np.argwhere(clip.frames[0][..., 0] > 128)
    # Counter-clockwise 90 degrees: the coded top-left block is shown bottom-left.
    assert red[:, 0].min() >= 56 and red[:, 1].max() <= 7


# -- reading ----------------------------------------------------------------------------------------


def nearest_rule(source_times: np.ndarray, fps: float, end: float) -> list[int]:
    out, k = [], 0
    while k / fps < end - 1e-9:
        d = np.abs(source_times - k / fps)
        out.append(int(np.flatnonzero(d <= d.min() + 1e-9)[0]))  # tie -> earlier frame
        k += 1
    return out


def test_resampling_picks_nearest_source_frame(media):
    frames = list(iter_video_frames(media["indexed30"], fps=16))
    assert all(isinstance(f, VideoFrame) for f in frames)
    got = [decoded_index(f.frame) for f in frames]
    expected = nearest_rule(np.arange(30) / 30, 16, 1.0)
    assert len(expected) == 16
    assert got == expected
    assert [f.index for f in frames] == list(range(16))
    np.testing.assert_allclose([f.time for f in frames], np.array(expected) / 30, atol=1e-6)


def test_fps_zero_keeps_every_frame_and_upsampling_repeats(media):
    assert [decoded_index(f.frame) for f in iter_video_frames(media["indexed30"], fps=0)] == list(range(30))
    up = [decoded_index(f.frame) for f in iter_video_frames(media["indexed30"], fps=60)]
    assert up == nearest_rule(np.arange(30) / 30, 60, 1.0)
    assert len(up) == 60


def test_resampling_follows_timestamps_of_variable_frame_rate(media):
    clip = read_video(media["vfr"], fps=10)
    src = np.concatenate([np.arange(10) / 30, np.arange(10, 20) / 30 + 0.5])
    end = src[-1] + 1 / 30
    expected = nearest_rule(src, 10, end)
    assert [decoded_index(f) for f in clip.frames] == expected
    assert len(clip) == len(expected) == 12  # 1.17 s of video; by frame count it would be 7


@pytest.fixture(scope="module")
def moving_clips(tmp_path_factory) -> dict[str, Path]:
    """Longer clips with every frame different: 4 s at 30 fps and 2.5 s at 60 fps."""
    d = tmp_path_factory.mktemp("moving")
    out = {}
    for name, rate, seconds in (("30fps", 30, 4), ("60fps", 60, 2.5)):
        out[name] = d / f"{name}.mp4"
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=96x64:rate={rate}:duration={seconds}", "-c:v", "libx264",
               "-pix_fmt", "yuv420p", "-crf", "12", str(out[name]))
    return out


def read_all(path, counter=None, **kwargs) -> tuple[list, int]:
    """(frames, how many frames came down ffmpeg's pipe)."""
    from steadydancer import video

    real, piped = video._read_frame, [0]

    def counted(*args):
        piped[0] += 1
        return real(*args)

    video._read_frame = counted
    try:
        return list(iter_video_frames(path, **kwargs)), piped[0]
    finally:
        video._read_frame = real


@pytest.mark.parametrize("clip, fps, max_frames, max_side", [
    ("30fps", 16, None, None), ("30fps", 16, 20, 48), ("30fps", 12, None, 48), ("30fps", 7.5, None, None),
    ("60fps", 16, None, 48), ("60fps", 25, 30, None), ("60fps", 16, 5, None),
])
def test_frames_dropped_before_scaling_change_nothing(moving_clips, clip, fps, max_frames, max_side, caplog):
    """Below the source rate ffmpeg drops the frames the rule cannot pick before scaling them: the
    same frames and times come out, and fewer frames come down the pipe -- in one read: Python's
    prediction of ffmpeg's select held for every frame (a disagreement would read the clip again)."""
    import logging

    with caplog.at_level(logging.INFO, logger="steadydancer.video"):
        kept, piped = read_all(moving_clips[clip], fps=fps, max_frames=max_frames, max_side=max_side)
    assert "reading it again" not in caplog.text
    every, piped_all = read_all(moving_clips[clip], fps=fps, max_frames=max_frames, max_side=max_side,
                                drop_early=False)
    assert [f.time for f in kept] == [f.time for f in every] and len(kept) > 4
    assert all(np.array_equal(a.frame, b.frame) for a, b in zip(kept, every))
    assert piped < 0.8 * piped_all


def test_a_frame_dropped_by_mistake_reads_the_clip_again(tmp_path, caplog):
    """A gap the drop window does not cover (variable frame rate: 11 frames missing after 1 s):
    the frame after the gap (1.4 s, 25 ms from the nearest 16 fps time: outside the window) is
    picked for the times in the gap but was dropped, so the clip is read again without dropping
    -- the same frames and times in the end, once each."""
    import logging

    gap = tmp_path / "gap.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=96x64:rate=30:duration=4", "-vf",
           "setpts='(N/30+gte(N,31)*11/30)/TB'", "-fps_mode", "vfr", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-crf", "12", str(gap))
    every, _ = read_all(gap, fps=16, drop_early=False)
    with caplog.at_level(logging.INFO, logger="steadydancer.video"):
        kept, _ = read_all(gap, fps=16)
    assert "reading it again without dropping frames" in caplog.text
    assert [f.time for f in kept] == [f.time for f in every] and [f.index for f in kept] == list(range(len(every)))
    assert all(np.array_equal(a.frame, b.frame) for a, b in zip(kept, every))


def test_the_drop_window_keeps_about_the_frames_the_rule_needs():
    """For 30 fps read at 16 fps (frames on a 1/15360 s time base): the first frame, roughly the
    16/30 the rule picks plus the margin's share, every frame of the tail, nothing without a
    timestamp; the expression ffmpeg gets is the same test."""
    from steadydancer.video import _DropWindow

    window = _DropWindow(fps=16.0, half=0.6 / 30, tail=3.0)
    keeps = [window.keeps(512 * n, 0, Fraction(1, 15360)) for n in range(120)]  # 30 fps in a 1/15360 time base
    assert keeps[0] and all(keeps[90:]) and 0.55 < sum(keeps[:90]) / 90 < 0.75
    assert not window.keeps(None, 0, Fraction(1, 15360))
    assert "select='gte(t-start_t\\,3.0)" in window.expression()


def test_max_side_max_frames_and_progress(media):
    calls = []
    clip = read_video(media["with_audio"], fps=16, max_side=80, max_frames=5,
                      progress=lambda frac, msg: calls.append((frac, msg)))
    assert isinstance(clip, VideoClip)
    assert clip.frames.shape == (5, 60, 80, 3) and clip.frames.dtype == np.uint8
    assert clip.fps == 16 and clip.info.width == 160
    assert len(calls) == 5
    fracs = [c[0] for c in calls]
    assert fracs == sorted(fracs) and 0 <= fracs[0] and fracs[-1] <= 1
    full = read_video(media["with_audio"], fps=16)
    assert len(full) == 32 and full.frames.shape[1:] == (120, 160, 3)


def test_min_frames_and_max_duration(media):
    assert len(read_video(media["one_frame"])) == 1
    with pytest.raises(SteadyDancerInputError, match="only 1 frame.*at least 2"):
        read_video(media["one_frame"], min_frames=2)
    with pytest.raises(SteadyDancerInputError, match=r"2\.0 s long.*limit is 1 s.*Trim"):
        read_video(media["with_audio"], max_duration=1)


@pytest.mark.parametrize("name, why", [
    ("text", "not a video file"),
    ("empty", "empty"),
    ("audio_only", "no video"),
    ("no_frames", "no video frames"),
])
def test_broken_inputs_raise_a_helpful_error(media, name, why):
    with pytest.raises(SteadyDancerInputError) as err:
        read_video(media[name])
    message = str(err.value)
    assert why in message and "H.264 .mp4" in message and media[name].name in message


def test_a_still_image_is_not_a_video(tmp_path, astronaut_path):
    with pytest.raises(SteadyDancerInputError, match="still image, not a video"):
        read_video(astronaut_path)


def test_missing_file(tmp_path):
    with pytest.raises(SteadyDancerInputError, match="not found"):
        probe_video(tmp_path / "nope.mp4")


def test_closing_the_iterator_early_stops_ffmpeg(media):
    it = iter_video_frames(media["with_audio"], fps=0)
    next(it)
    it.close()  # must not hang or leave a process behind (the finally block kills it)


# -- writing ----------------------------------------------------------------------------------------


def test_write_video_is_browser_playable(tmp_path):
    frames = (f for f in indexed_frames(21, size=(75, 51)))  # a generator: streamed; odd sides
    path = write_video(tmp_path / "out.mp4", frames, 16, crf=18, preset="fast")
    info_text = ffmpeg_info(path)
    assert re.search(r"Video: h264 \(High\).*yuv420p\(tv, bt709", info_text)
    info = probe_video(path, count_frames=True)
    assert (info.width, info.height) == (74, 50)  # cropped by one pixel to even sides
    assert info.num_frames == 21 and info.fps == 16 and not info.has_audio
    atoms = top_level_atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")  # +faststart
    clip = read_video(path, fps=0)
    assert [decoded_index(f) for f in clip.frames] == list(range(21))


def test_write_video_colours_round_trip(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (153, 0, 0), (255, 255, 255), (128, 128, 128)]
    frame = np.zeros((96, 32, 3), np.uint8)
    for i, c in enumerate(colours):
        frame[16 * i:16 * (i + 1)] = c
    clip = read_video(write_video(tmp_path / "c.mp4", [frame] * 3, 16), fps=0)
    for i, c in enumerate(colours):
        np.testing.assert_allclose(clip.frames[0][16 * i + 8, 16], c, atol=4)


def yuv_planes(yuv: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = h * w
    return (yuv[:size].reshape(h, w), yuv[size:size * 5 // 4].reshape(h // 2, w // 2),
            yuv[size * 5 // 4:].reshape(h // 2, w // 2))


@pytest.mark.parametrize("rgb, ycbcr", [
    # ITU-R BT.709 limited range, the textbook values (BT.601 would give red 81, 90, 240)
    ((0, 0, 0), YUV_BLACK), ((255, 255, 255), (235, 128, 128)), ((255, 0, 0), (63, 102, 240)),
    ((0, 255, 0), (173, 42, 26)), ((0, 0, 255), (32, 240, 118)),
])
def test_rgb_to_yuv420p_is_bt709_limited_range(rgb, ycbcr):
    planes = yuv_planes(rgb_to_yuv420p(np.full((6, 10, 3), rgb, np.uint8)), 6, 10)
    for plane, expected in zip(planes, ycbcr):
        assert (plane == expected).all(), (rgb, plane, expected)


def test_rgb_to_yuv420p_converts_only_the_lit_box_and_matches_the_whole_frame_conversion():
    """Skeleton frames are mostly black: only the box around the non-black pixels is converted,
    and the result equals converting every pixel (luma per pixel, chroma the 2x2 block mean)."""
    rng = np.random.default_rng(3)
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[13:30, 21:40] = rng.integers(0, 256, (17, 19, 3))  # odd edges: the box grows to even ones
    frame[41, 7] = (0, 0, 9)  # a single dim blue pixel still counts
    assert lit_box(frame) == (12, 42, 6, 40) and lit_box(np.zeros_like(frame)) is None
    y, cb, cr = yuv_planes(rgb_to_yuv420p(frame), 48, 64)
    # the reference: float64 BT.709 per pixel, then the 2x2 means of the rounded Cb/Cr
    kr, kb = 0.2126, 0.0722
    rgbf = frame.astype(np.float64)
    luma = rgbf @ np.array([kr, 1 - kr - kb, kb])
    ref_y = np.rint(16 + 219 / 255 * luma)
    ref_c = [np.rint(128 + 224 / 255 * 0.5 * (rgbf[..., c] - luma) / (1 - k)) for c, k in ((2, kb), (0, kr))]
    ref_c = [c.reshape(24, 2, 32, 2).mean(axis=(1, 3)) for c in ref_c]
    np.testing.assert_allclose(y, ref_y, atol=1)
    np.testing.assert_allclose(cb, ref_c[0], atol=1)
    np.testing.assert_allclose(cr, ref_c[1], atol=1)
    black = frame.max(-1) == 0
    assert (y[black] == 16).all() and y[41, 7] == 17 and cb[20, 3] == 129  # Y 16.56, Cb (131.95 + 3 * 128) / 4
    assert (cb[:6] == 128).all() and (cr[:, 20:] == 128).all()
    with pytest.raises(ValueError, match="even"):
        rgb_to_yuv420p(np.zeros((5, 4, 3), np.uint8))


@pytest.mark.parametrize("settings", [MASTER_ENCODING, CONDITION_ENCODING, DISPLAY_ENCODING],
                         ids=["master", "condition", "display"])
def test_palette_colours_survive_the_encoder(tmp_path, settings):
    """The pose palette (full and dimmed limb colours, joints, face points), white and black go
    through the writer and the decoder (which reads the BT.709 tag) and come back within 4 levels
    per channel; black stays exactly black. A BT.601 matrix misses by up to 40 levels."""
    from steadydancer.pose.render import BODY_COLORS, DIMMED_BODY_COLORS, FACE_POINT_COLOR, HAND_POINT_COLOR

    colours = list(dict.fromkeys([*BODY_COLORS, *DIMMED_BODY_COLORS, HAND_POINT_COLOR, FACE_POINT_COLOR,
                                  (255, 255, 255)]))
    frame = np.zeros((16 + 32 * 5, 16 + 32 * 8, 3), np.uint8)
    centres = []
    for i, colour in enumerate(colours):  # 16x16 patches on the macroblock grid, 16 px of black between
        r, k = divmod(i, 8)
        frame[16 + 32 * r:32 + 32 * r, 16 + 32 * k:32 + 32 * k] = colour
        centres.append((24 + 32 * r, 24 + 32 * k))
    path = write_video(tmp_path / "palette.mp4", [frame] * 3, 16, settings=settings)
    assert re.search(r"Video: h264 .*yuv420p\(tv, bt709", ffmpeg_info(path))
    for out in read_video(path, fps=0).frames:
        for (y, x), colour in zip(centres, colours):
            patch = out[y - 4:y + 4, x - 4:x + 4].astype(int)
            assert np.abs(patch - np.array(colour)).max() <= 4, (colour, patch.mean(axis=(0, 1)))
        assert (out[frame.max(-1) == 0] == 0).all()


def test_write_video_with_audio_trimmed_to_video(media, tmp_path):
    path = write_video(tmp_path / "a.mp4", indexed_frames(16), 16,
                       audio_from=media["with_audio"], audio_start=0.5)
    info = probe_video(path)
    assert info.has_audio
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert "Audio: aac" in ffmpeg_info(path)
    atoms = top_level_atoms(path)
    assert atoms.index("moov") < atoms.index("mdat")
    assert not list(tmp_path.glob(".*.tmp.mp4"))


def decoded_audio(path: Path, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a file's audio, decoded to float samples."""
    raw = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-map", "0:a:0", "-t", str(seconds), "-f", "f32le", "-ac", "1", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.float32)


def test_aac_audio_is_copied_and_other_audio_encoded(media, tmp_path):
    """An AAC track goes in as it is (its samples decode identically: no second encode); any other
    codec (here PCM in a .mov) is encoded to AAC, the codec every browser plays in an MP4."""
    assert audio_codec_args("aac") == ["-c:a", "copy"]
    assert audio_codec_args("pcm_s16le")[:2] == ["-c:a", "aac"] and audio_codec_args(None)[:2] == ["-c:a", "aac"]
    copied = write_video(tmp_path / "copied.mp4", indexed_frames(16), 16, audio_from=media["with_audio"])
    source, out = decoded_audio(media["with_audio"], 0.9), decoded_audio(copied, 0.9)
    assert out.size == source.size > 30000 and np.array_equal(out, source)

    pcm = tmp_path / "pcm.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=16:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=330:duration=2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "pcm_s16le",
           "-shortest", str(pcm))
    assert probe_video(pcm).audio_codec == "pcm_s16le"
    for writer in (dict(num_frames=16), {}):  # muxed in the same run, or in a second pass
        encoded = write_video(tmp_path / f"encoded{len(writer)}.mp4", (f for f in indexed_frames(16)), 16,
                              audio_from=pcm, **writer)
        assert probe_video(encoded).audio_codec == "aac"
        assert probe_video(encoded).duration == pytest.approx(1.0, abs=0.05)
        reference = decoded_audio(pcm, 0.9)
        assert not np.array_equal(decoded_audio(encoded, 0.9)[:reference.size], reference)  # encoded, lossy


def ffmpeg_children() -> list[int]:
    """Running ffmpeg processes started by this one (Linux /proc)."""
    import os

    pids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid() and "(ffmpeg" in stat:
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux: /proc")
def test_a_reader_stopped_early_stops_ffmpeg_at_once(moving_clips):
    """max_frames reached, or the generator closed by its consumer: the decoder is gone right
    then (with frames dropped early or not), not whenever the garbage collector gets to it."""
    before = set(ffmpeg_children())
    for drop_early in (True, False):
        assert len(list(iter_video_frames(moving_clips["60fps"], fps=16, max_frames=3, drop_early=drop_early))) == 3
        assert set(ffmpeg_children()) == before
        frames = iter_video_frames(moving_clips["60fps"], fps=16, drop_early=drop_early)
        next(frames)
        assert len(set(ffmpeg_children()) - before) == 1
        frames.close()
        assert set(ffmpeg_children()) == before


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux: per-thread nice values in /proc")
def test_the_decoder_runs_niced(media):
    """The reading ffmpeg runs at DECODER_NICENESS, every one of its threads (the pose detector it
    feeds comes first on the cores)."""
    import os

    from steadydancer.video import DECODER_NICENESS

    before = set(ffmpeg_children())
    frames = iter_video_frames(media["indexed30"], fps=0)
    next(frames)  # ffmpeg is running (its pipe is full: it waits for us)
    try:
        (pid,) = set(ffmpeg_children()) - before
        niceness = [int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
                    for task in Path(f"/proc/{pid}/task").iterdir()]
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert niceness and all(n == max(base, DECODER_NICENESS) for n in niceness), niceness
    finally:
        frames.close()


@pytest.mark.skipif(not hasattr(__import__("os"), "setpriority"), reason="POSIX nice values")
def test_lower_priority_only_raises_the_nice_value():
    import os
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        base = os.getpriority(os.PRIO_PROCESS, child.pid)
        lower_priority(child.pid, base + 3)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == base + 3
        lower_priority(child.pid, base + 1)  # never back up (an unprivileged process could not anyway)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == base + 3
    finally:
        child.kill()
        child.wait()
    lower_priority(child.pid, 10)  # gone: nothing to do, no error


def test_write_video_skips_audio_when_source_has_none(media, tmp_path):
    path = write_video(tmp_path / "n.mp4", indexed_frames(4), 16, audio_from=media["indexed30"])
    assert not probe_video(path).has_audio


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "e.mp4", [], 16)
    with pytest.raises(ValueError, match="same size|must be"):
        write_video(tmp_path / "s.mp4", [np.zeros((32, 32, 3), np.uint8), np.zeros((16, 32, 3), np.uint8)], 16)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "f.mp4", [np.zeros((32, 32, 3), np.float32)], 16)
    with pytest.raises(ValueError, match="preset"):
        write_video(tmp_path / "p.mp4", indexed_frames(2), 16, preset="warp")


def x264_options(path: Path) -> str:
    """The settings string x264 writes into every stream it encodes."""
    data = path.read_bytes()
    start = data.find(b"x264 - core")
    assert start >= 0, "no x264 settings in the file"
    return data[start:data.find(b"\x00", start)].decode("latin1")


def test_master_and_display_profiles_are_separate(tmp_path):
    """What a model may read keeps x264 medium (subme 7, hex search); previews use the display
    profile (ultrafast: subme 0, diamond search). write_video defaults to the master profile."""
    assert MASTER_ENCODING == EncodeSettings("medium", 18) and DISPLAY_ENCODING != MASTER_ENCODING
    frames = indexed_frames(8)
    master = x264_options(write_video(tmp_path / "m.mp4", frames, 16))
    assert "subme=7" in master and "me=hex" in master and "crf=18.0" in master
    display_path = write_video(tmp_path / "d.mp4", frames, 16, settings=DISPLAY_ENCODING)
    display = x264_options(display_path)
    assert "subme=0" in display and "me=dia" in display and "crf=18.0" in display
    # still what every browser plays: H.264 (Constrained Baseline) 4:2:0, BT.709, moov first
    assert re.search(r"Video: h264 \(Constrained Baseline\).*yuv420p\(tv, bt709", ffmpeg_info(display_path))
    atoms = top_level_atoms(display_path)
    assert atoms.index("moov") < atoms.index("mdat")
    tuned = x264_options(write_video(tmp_path / "t.mp4", frames, 16,
                                     settings=EncodeSettings("veryfast", 20, tune="animation", keyint=16)))
    assert "keyint=16" in tuned and "crf=20.0" in tuned and "deblock=1:1:1" in tuned  # animation's deblock
    override = x264_options(write_video(tmp_path / "o.mp4", frames, 16, settings=DISPLAY_ENCODING, crf=23))
    assert "subme=0" in override and "crf=23.0" in override
    # the condition files: ultrafast with one x264 thread; the master keeps x264's threading
    condition = x264_options(write_video(tmp_path / "c.mp4", frames, 16, settings=CONDITION_ENCODING))
    assert "subme=0" in condition and " threads=1 " in condition and "crf=18.0" in condition
    assert "-threads" not in MASTER_ENCODING.ffmpeg_args()  # (x264 picks 1 itself for frames this small)


@pytest.mark.parametrize("kwargs, match", [
    (dict(preset="warp"), "preset"), (dict(crf=52), "crf"), (dict(tune="cinema"), "tune"), (dict(keyint=0), "keyint"),
    (dict(threads=0), "threads"),
])
def test_encode_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EncodeSettings(**kwargs)


def test_video_writer_encodes_while_frames_come(tmp_path):
    """ffmpeg starts with the first frame and consumes frames as they are written: the process is
    running before the last frame exists, and the frames come out in order."""
    writer = VideoWriter(tmp_path / "w.mp4", 16)
    for i, frame in enumerate(indexed_frames(12)):
        writer.write(frame)
        if i == 0:
            assert writer._proc is not None and writer._proc.poll() is None
    path = writer.close()
    clip = read_video(path, fps=0)
    assert [decoded_index(f) for f in clip.frames] == list(range(12))
    with pytest.raises(ValueError, match="after close"):
        writer.write(indexed_frames(1)[0])


def test_video_writer_removes_the_file_when_the_producer_fails(tmp_path):
    with pytest.raises(RuntimeError, match="render failed"):
        with VideoWriter(tmp_path / "x.mp4", 16) as writer:
            writer.write(indexed_frames(1)[0])
            raise RuntimeError("render failed")
    assert not list(tmp_path.iterdir())


def test_audio_muxed_in_the_same_run_when_the_length_is_known(media, tmp_path):
    """num_frames known: one ffmpeg run muxes the audio (no temporary file), cut like the two-pass way."""
    one = VideoWriter(tmp_path / "one.mp4", 16, audio_from=media["with_audio"], audio_start=0.5, num_frames=16)
    assert one._mux_now and one._target == one.path
    with one:
        for frame in indexed_frames(16):
            one.write(frame)
    two = write_video(tmp_path / "two.mp4", (f for f in indexed_frames(16)), 16,  # a generator: length unknown
                      audio_from=media["with_audio"], audio_start=0.5)
    for path in (one.path, two):
        info = probe_video(path)
        assert info.has_audio and info.duration == pytest.approx(1.0, abs=0.05)
        assert [decoded_index(f) for f in read_video(path, fps=0).frames] == list(range(16))
    assert not list(tmp_path.glob(".*.tmp.mp4"))


# -- the real driving clip ---------------------------------------------------------------------------


@pytest.mark.integration
def test_real_driving_clip(shared_media):
    path = shared_media / "driving_seated_gestures.mp4"
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.has_audio) == (720, 1280, 30, True)
    clip = read_video(path, fps=16, max_side=512)
    assert clip.frames.shape == (169, 512, 288, 3)  # t_k = k/16 < 10.53 s
    assert clip.times[-1] == pytest.approx(10.5, abs=1e-6)
    assert clip.frames.mean() > 20  # real pictures, not black frames
