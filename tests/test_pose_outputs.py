"""The pose path's files written concurrently: same frames as drawing them one by one, the
driving clip decoded once, the early preview, encoder profiles by purpose, failures."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from steadydancer.pose import outputs as pose_outputs
from steadydancer.pose.path import (
    DrivingFrames, PoseOptions, align_driving, clean_driving, extract_driving, render_preview, run_pose_path,
    write_pose_outputs,
)
from steadydancer.pose.render import official_canvas_size, render_pose, resize_frames
from steadydancer.video import (
    CONDITION_ENCODING, DISPLAY_ENCODING, MASTER_ENCODING, iter_video_frames, probe_video, read_video, write_video,
)


@pytest.fixture(scope="module")
def result(person_clip, astronaut_path):
    return run_pose_path(astronaut_path, person_clip, PoseOptions(lead_in_frames=2, seed=5))


def decoded(path):
    return read_video(path, fps=0).frames


def x264_options(path) -> str:
    data = path.read_bytes()
    start = data.find(b"x264 - core")
    return data[start:data.find(b"\x00", start)].decode("latin1")


def test_streamed_videos_are_the_frames_drawn_one_by_one(result, tmp_path):
    """The concurrent writer encodes exactly the frames of the plain per-frame drawing, in order:
    the condition files decode to the same pixels as encoding those frames with write_video and
    the condition profile, and the preview to the same pixels as render_preview's frames."""
    paths = write_pose_outputs(result, tmp_path / "out")
    canvas = official_canvas_size(*result.reference.image.size)
    for key, seq in (("positive", result.aligned.positive), ("negative", result.aligned.negative)):
        frames = list(resize_frames((render_pose(f, *canvas) for f in seq), result.reference.size))
        reference = write_video(tmp_path / f"{key}.mp4", frames, seq.fps, settings=CONDITION_ENCODING)
        np.testing.assert_array_equal(decoded(paths[key]), decoded(reference), err_msg=key)
    preview = render_preview(result.reference, result.driving, result.cleaned, result.aligned, result.options)
    reference = write_video(tmp_path / "preview.mp4", preview, 16, settings=DISPLAY_ENCODING)
    np.testing.assert_array_equal(decoded(paths["preview"]), decoded(reference))
    assert len(preview) == len(result.aligned.positive) == 26


def test_condition_files_use_the_condition_encoding_and_the_preview_is_for_display(result, tmp_path):
    """The condition files: skeleton settings (x264 ultrafast, one thread), not the master's
    medium, which stays for generated videos; the preview: the display profile."""
    assert CONDITION_ENCODING != MASTER_ENCODING
    paths = write_pose_outputs(result, tmp_path, encodings={"positive": DISPLAY_ENCODING})
    negative = x264_options(paths["negative"])
    assert "subme=0" in negative and " threads=1 " in negative and "crf=18.0" in negative
    assert "subme=0" in x264_options(paths["preview"]) and "subme=0" in x264_options(paths["positive"])


def counting_decoder(monkeypatch):
    import steadydancer.video as video

    calls = []
    real = video.iter_video_frames

    def counted(*args, **kwargs):
        calls.append(kwargs.get("max_side"))
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "iter_video_frames", counted)
    return calls


def test_the_driving_clip_is_decoded_once(person_clip, astronaut_path, tmp_path, monkeypatch):
    """Extraction keeps the decoded frames at preview size; previews after it decode nothing."""
    calls = counting_decoder(monkeypatch)
    res = run_pose_path(astronaut_path, person_clip, PoseOptions())
    assert len(calls) == 1 and len(res.driving.frames.frames) == len(res.driving.poses) == 24
    write_pose_outputs(res, tmp_path / "a", outputs=("preview",))
    write_pose_outputs(res, tmp_path / "b", outputs=("preview",))
    assert len(calls) == 1


def test_saved_poses_with_a_clip_decode_it_once_for_every_preview(result, person_clip, tmp_path, monkeypatch):
    """A project motion (poses.json + a clip to show): the first preview decodes the clip while it
    renders and keeps the frames -- in the store shared by copies of the driving poses (the app
    cuts copies) -- so the next preview decodes nothing."""
    saved = result.driving.poses.save(tmp_path / "poses.json")
    options = PoseOptions(max_frames=20)
    driving = dataclasses.replace(extract_driving(saved, options), video=person_clip)
    assert driving.frames.frames == []
    calls = counting_decoder(monkeypatch)
    for run in range(2):
        cut = dataclasses.replace(driving, poses=driving.poses[:20])
        cleaned = clean_driving(cut, options)
        res = dataclasses.replace(result, driving=cut, cleaned=cleaned,
                                  aligned=align_driving(result.reference, cleaned, options), options=options)
        write_pose_outputs(res, tmp_path / f"run{run}", outputs=("preview",))
        assert len(calls) == 1, f"run {run}"
    assert len(driving.frames.frames) == 20 and driving.frames.max_side == pose_outputs.PREVIEW_HEIGHT


def test_frames_kept_during_extraction_have_the_preview_size():
    """The kept frames are what the preview decoder would give: longer side 480, even sides."""
    from steadydancer.pose.path import _PreviewFrameCollector

    store = DrivingFrames()
    collect = _PreviewFrameCollector(store)
    for i, shape in enumerate([(640, 360, 3), (640, 360, 3)]):
        collect(i, np.full(shape, 7, np.uint8))
    collect.finish(2)
    assert [f.shape for f in store.frames] == [(480, 270, 3)] * 2 and store.frames[0].mean() == 7
    small = DrivingFrames()
    collect = _PreviewFrameCollector(small)
    collect(0, np.zeros((384, 320, 3), np.uint8))  # already small: kept as it is
    collect.finish(1)
    assert small.frames[0].shape == (384, 320, 3)
    over = DrivingFrames()
    collect = _PreviewFrameCollector(over)
    collect.budget = 2 * 480 * 270 * 3 - 1  # too long a clip: nothing kept, the preview decodes again
    for i in range(3):
        collect(i, np.zeros((640, 360, 3), np.uint8))
    collect.finish(3)
    assert over.frames == []


def test_early_preview_comes_first_with_the_first_frames(result, tmp_path):
    ready = []
    paths = write_pose_outputs(result, tmp_path, outputs=("poses", "preview"), early_preview_frames=8,
                               on_ready=lambda key, path: ready.append((key, path.is_file())))
    assert ready[0] == ("poses", True)
    assert ready.index(("preview_start", True)) < ready.index(("preview", True))
    start, full = decoded(paths["preview_start"]), decoded(paths["preview"])
    assert len(start) == 8 and len(full) == 26
    assert np.abs(start.astype(int) - full[:8]).mean() < 2  # the same frames, encoded separately
    assert sorted(p.name for p in tmp_path.iterdir()) == ["poses.json", "preview.mp4", "preview_start.mp4"]


def test_only_the_requested_outputs(result, tmp_path):
    paths = write_pose_outputs(result, tmp_path, outputs=("poses", "aligned_poses"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned_poses.json", "poses.json"] == sorted(
        p.name for p in paths.values())
    with pytest.raises(ValueError, match="unknown outputs"):
        write_pose_outputs(result, tmp_path, outputs=("positive", "thumbnail"))


def test_a_failing_render_stops_every_stream_and_leaves_no_partial_video(result, tmp_path, monkeypatch):
    real = pose_outputs.condition_renderer

    def failing(reference, options, size=None):
        render = real(reference, options, size)
        count = [0]

        def draw(frame):
            count[0] += 1
            if count[0] == 5:
                raise RuntimeError("render failed")
            return render(frame)

        return draw

    monkeypatch.setattr(pose_outputs, "condition_renderer", failing)
    with pytest.raises(RuntimeError, match="render failed"):
        write_pose_outputs(result, tmp_path, outputs=("positive", "negative"))
    assert not list(tmp_path.glob("*.mp4"))


def test_preview_audio_is_muxed_and_cut_to_the_video(result, tmp_path):
    """The preview takes the driving clip's audio in the same encode (cut to the preview length)."""
    import subprocess

    from steadydancer.video import ffmpeg_exe

    with_audio = tmp_path / "tone.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=160x120:rate=16:duration=3", "-f", "lavfi", "-i", "sine=duration=3",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(with_audio)],
                   check=True, capture_output=True)
    paths = write_pose_outputs(result, tmp_path / "out", outputs=("preview",), audio_from=with_audio)
    info = probe_video(paths["preview"])
    assert info.has_audio and info.duration == pytest.approx(26 / 16, abs=0.08)
    assert not list((tmp_path / "out").glob(".*"))


def test_iter_video_frames_is_what_the_decoder_counting_wraps():
    # The counting tests above patch steadydancer.video.iter_video_frames; the pose path must look
    # it up there at call time (not bind it at import) for the count to mean anything.
    import steadydancer.pose.outputs as outputs_module
    import steadydancer.pose.extract as extract_module

    assert not hasattr(outputs_module, "iter_video_frames") and not hasattr(extract_module, "iter_video_frames")
    assert callable(iter_video_frames)


def test_iter_pose_outputs_streams_events_and_can_be_cancelled(result, tmp_path):
    from steadydancer.pose.outputs import OutputsCancelled, iter_pose_outputs

    events = list(iter_pose_outputs(result, tmp_path / "all", outputs=("poses", "preview"), early_preview_frames=4))
    kinds = [kind for kind, _ in events]
    ready = [value[0] for kind, value in events if kind == "ready"]
    assert kinds[-1] == "done" and "progress" in kinds and ready == ["poses", "preview_start", "preview"]
    assert events[-1][1]["preview"].is_file()

    # Closing the stream at the first file stops the work: the videos in progress are removed.
    stream = iter_pose_outputs(result, tmp_path / "cut", outputs=("poses", "positive", "negative"))
    for kind, value in stream:
        if kind == "ready":
            break
    stream.close()
    assert not list((tmp_path / "cut").glob("*.mp4"))
    cancel = __import__("threading").Event()
    cancel.set()
    with pytest.raises(OutputsCancelled):
        write_pose_outputs(result, tmp_path / "never", outputs=("positive",), cancel=cancel)
    assert not list((tmp_path / "never").glob("*.mp4"))
    with pytest.raises(ValueError, match="unknown outputs"):  # the worker's error, raised in the caller
        list(iter_pose_outputs(result, tmp_path / "err", outputs=("thumbnail",)))
