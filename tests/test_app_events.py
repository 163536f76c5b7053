"""The app's event functions called in-process: preview, per-stage re-runs, validation of bad input,
generation with the tiny saved pipeline on CPU, cancel, the GPU-time estimate and the ZeroGPU
duration. No server, no browser (see test_app_server.py / test_app_browser.py)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import gradio as gr  # noqa: E402

from steadydancer import settings  # noqa: E402
from steadydancer.pose.path import PoseOptions, extract_driving  # noqa: E402
from studio import inputs, runtime  # noqa: E402
from studio.sessions import PoseSession, compute_poses, delete_session, motion_frames, sweep_old_sessions  # noqa: E402
from tests.conftest import assert_same_poses, run_python  # noqa: E402


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    from studio import AppConfig

    return AppConfig.from_env().replace(
        model=str(tmp_path_factory.mktemp("empty") / "no-weights"), offline=True, device="cpu",
        tmp_root=tmp_path_factory.mktemp("sessions"), zero_gpu=False).with_resolutions({"tiny": (64 * 64, 3.0)})


@pytest.fixture(scope="module")
def app(config):
    """The handlers of a Studio built on the test configuration."""
    from studio import Studio

    return Studio(config)


POSE = dict(motion="", num_frames=17, smooth=0.3, repair=True, align_mode="robust", alignment_frame=-1,
            lead_in_frames=0)


def final(outputs):
    """The last of what a streaming handler yields (what an API client receives)."""
    last = None
    for last in outputs:
        pass
    return last


def preview_stream(app, image, video, session=None, **changes):
    kwargs = {**POSE, **changes}
    return app.preview_poses(str(image), str(video) if video else None, kwargs["motion"], kwargs["num_frames"],
                             kwargs["smooth"], kwargs["repair"], kwargs["align_mode"], kwargs["alignment_frame"],
                             kwargs["lead_in_frames"], session=session or app.session(None), progress=None)


def preview(app, image, video, session=None, **changes):
    return final(preview_stream(app, image, video, session, **changes))


@pytest.fixture(scope="module")
def previewed(app, astronaut_path, person_clip):
    """One preview made at the start; later tests reuse its session (extraction cached)."""
    return preview(app, astronaut_path, person_clip)


# ---------------------------------------------------------------------------------------------
# Preview and the per-stage cache
# ---------------------------------------------------------------------------------------------


def test_preview_writes_videos_report_and_poses(app, previewed):
    from steadydancer.pose.sequence import PoseSequence
    from steadydancer.video import probe_video

    preview_path, pose_path, report, poses_path, session = previewed
    assert isinstance(session, PoseSession)
    for p in (preview_path, pose_path, poses_path):
        assert Path(p).is_file() and Path(p).is_relative_to(session.workdir)
    info = probe_video(preview_path, count_frames=True)
    assert info.num_frames == 17 and info.width > 2 * info.height  # three panels side by side
    assert probe_video(pose_path, count_frames=True).num_frames == 17
    seq = PoseSequence.load(poses_path)
    assert len(seq) == 17 and seq.frames_with_person().sum() >= 15
    assert "17 frames" in report and "**Repair:**" in report and "**Alignment:** robust" in report
    assert dict(session.runs) == {"reference": 1, "extract": 1, "clean": 1, "align": 1}


def test_preview_streams_its_first_second_then_everything(app, astronaut_path, person_clip):
    """The preview shows its first second (16 frames) with the report and poses.json as soon as it is
    encoded, the pose video still empty; then the whole preview and the pose video. The app's pose
    video is encoded for display and no negative video is written (nothing shows it)."""
    from steadydancer.video import probe_video

    steps = list(preview_stream(app, astronaut_path, person_clip))  # its own session: the others' counts stay
    assert len(steps) == 2
    (early, no_pose, report, poses_json, _), (full, pose, report2, poses_json2, session) = steps
    assert probe_video(early, count_frames=True).num_frames == 16 and no_pose is None
    assert probe_video(full, count_frames=True).num_frames == 17 and Path(pose).is_file()
    assert report == report2 and poses_json == poses_json2 and Path(poses_json).is_file()
    written = sorted(p.name for p in Path(full).parent.iterdir())
    assert written == ["aligned_pose.mp4", "aligned_poses.json", "poses.json", "preview.mp4", "preview_start.mp4"]
    data = Path(pose).read_bytes()
    assert b"subme=0" in data[data.find(b"x264 - core"):][:2000]  # the display profile
    # A clip no longer than the first second has nothing to stream early: one result.
    assert len(list(preview_stream(app, astronaut_path, person_clip, session, smooth=0.45, num_frames=13))) == 1


def poses(app, session, image, video, **changes):
    """compute_poses alone (no videos written): what the cache re-runs."""
    kw = {**POSE, **changes}
    options = inputs.pose_options(kw["num_frames"], kw["smooth"], kw["repair"], kw["align_mode"],
                                  kw["alignment_frame"], kw["lead_in_frames"])
    return compute_poses(session, str(image), inputs.resolve_driving(str(video), ""), options)


def test_controls_rerun_only_the_stages_they_affect(app, astronaut_path, person_clip, previewed, tmp_path):
    session = previewed[-1]
    runs = session.runs

    poses(app, session, astronaut_path, person_clip, smooth=0.6)
    assert (runs["reference"], runs["extract"], runs["clean"], runs["align"]) == (1, 1, 2, 2)

    poses(app, session, astronaut_path, person_clip, smooth=0.6, align_mode="official")
    assert (runs["reference"], runs["extract"], runs["clean"], runs["align"]) == (1, 1, 2, 3)

    # Lead-in and a shorter length cut what was read and cleaned: only the alignment re-runs.
    result = poses(app, session, astronaut_path, person_clip, smooth=0.6, align_mode="official", lead_in_frames=4)
    assert (runs["extract"], runs["clean"], runs["align"]) == (1, 2, 4)
    assert len(result.cleaned.poses) == 13 and len(result.aligned.positive) == 17
    result = poses(app, session, astronaut_path, person_clip, smooth=0.6, num_frames=9)
    assert (runs["extract"], runs["clean"], runs["align"]) == (1, 2, 5) and len(result.aligned.positive) == 9

    # Longer than what was read (17): read again; the clip has only 24 frames, so a still longer
    # length finds it all there already.
    result = poses(app, session, astronaut_path, person_clip, smooth=0.6, num_frames=33)
    assert (runs["extract"], runs["clean"]) == (2, 3) and len(result.cleaned.poses) == 24
    result = poses(app, session, astronaut_path, person_clip, smooth=0.6, num_frames=41)
    assert (runs["extract"], runs["clean"]) == (2, 3) and len(result.cleaned.poses) == 24

    # A new image re-detects the character only.
    flipped = tmp_path / "flipped.png"
    Image.open(astronaut_path).transpose(Image.FLIP_LEFT_RIGHT).save(flipped)
    poses(app, session, flipped, person_clip, smooth=0.6, num_frames=41)
    assert (runs["reference"], runs["extract"], runs["clean"]) == (2, 2, 3)


def test_refresh_runs_only_after_a_preview_and_for_the_same_inputs(app, astronaut_path, person_clip, previewed):
    fresh = final(app.refresh_preview(str(astronaut_path), str(person_clip), *list(POSE.values()), session=None,
                                progress=None))
    assert all(isinstance(v, type(gr.skip())) for v in fresh)  # no preview yet: a slider never extracts

    session = previewed[-1]
    extracted = session.runs["extract"]
    out = final(app.refresh_preview(str(astronaut_path), str(person_clip), "", 17, 0.1, True, "robust", -1, 0, session=session,
                              progress=None))
    assert Path(out[0]).is_file() and session.runs["extract"] == extracted
    again = final(app.refresh_preview(str(astronaut_path), str(person_clip), "", 17, 0.1, True, "robust", -1, 0, session=session,
                                progress=None))
    assert all(isinstance(v, type(gr.skip())) for v in again)  # nothing changed: nothing to do

    other = final(app.refresh_preview(str(astronaut_path), str(REPO_ROOT / "missing.mp4"), "", 17, 0.1, True, "robust",
                                -1, 0, session=session, progress=None))
    assert all(isinstance(v, type(gr.skip())) for v in other)  # another clip waits for Preview


def test_project_motion_uses_its_poses_without_the_detector(app, astronaut_path, tmp_path, monkeypatch):
    from steadydancer.pose.sequence import PoseSequence

    from tests.conftest import make_person_frames, write_clip

    motions = tmp_path / "examples"
    motions.mkdir()
    # A motion = poses.json (+ its clip): reuse the poses extracted from the test clip.
    clip = write_clip(motions / "sway.mp4", make_person_frames(20), fps=16)
    seq = extract_driving(clip, PoseOptions()).poses
    seq.save(motions / "sway.poses.json")
    monkeypatch.setattr(inputs, "EXAMPLES_DIR", motions)
    assert set(inputs.project_motions()) == {"sway"}

    calls = []
    import steadydancer.pose.extract as extract

    monkeypatch.setattr(extract, "extract_video_poses", lambda *a, **k: calls.append(a) or seq)
    out = preview(app, astronaut_path, None, motion="sway")
    assert calls == [] and "Sway" in out[2] and len(PoseSequence.load(out[3])) == 17
    with pytest.raises(gr.Error, match="unknown project motion"):
        preview(app, astronaut_path, None, motion="nope")


# ---------------------------------------------------------------------------------------------
# Bad input: a readable gr.Error each time
# ---------------------------------------------------------------------------------------------


def _video(path: Path, frames) -> Path:
    from tests.conftest import write_clip

    return write_clip(path, frames, fps=16)


def test_missing_inputs(app, astronaut_path, person_clip):
    with pytest.raises(gr.Error, match="image: add a character image"):
        preview(app, "", person_clip)
    with pytest.raises(gr.Error, match="driving_video: add a driving video"):
        preview(app, astronaut_path, None)


@pytest.mark.parametrize("case", ["text_as_mp4", "one_frame", "empty", "not_a_video_suffix", "too_long"])
def test_bad_driving_videos(app, astronaut_path, tmp_path, monkeypatch, case):
    if case == "text_as_mp4":
        path = tmp_path / "clip.mp4"
        path.write_text("hello, I am a text file\n" * 50)
        match = "Could not read video clip.mp4"
    elif case == "one_frame":
        from tests.conftest import make_person_frames

        path = _video(tmp_path / "one.mp4", make_person_frames(1))
        match = "frame"
    elif case == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
        match = "empty"
    elif case == "not_a_video_suffix":
        path = tmp_path / "dance.txt"
        path.write_text("x")
        match = "not a video file"
    else:
        from tests.conftest import make_person_frames

        path = _video(tmp_path / "long.mp4", make_person_frames(48))  # 3 s
        monkeypatch.setattr(settings, "MAX_DRIVING_SECONDS", 2.0)
        match = "the limit is 2 s"
    with pytest.raises(gr.Error, match=match):
        preview(app, astronaut_path, path)


def test_no_person_in_the_video(app, astronaut_path, tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((256, 256, 3), 90 + 5 * t, np.uint8) for t in range(12)]
    frames = [np.clip(f + rng.integers(0, 20, f.shape), 0, 255).astype(np.uint8) for f in frames]
    with pytest.raises(gr.Error, match="No person"):
        preview(app, astronaut_path, _video(tmp_path / "empty_stage.mp4", frames))


@pytest.mark.parametrize("case", ["no_person", "tiny", "extreme_aspect", "not_an_image"])
def test_bad_character_images(app, person_clip, tmp_path, case):
    path = tmp_path / f"{case}.png"
    if case == "no_person":
        Image.new("RGB", (512, 512), (120, 160, 200)).save(path)
        match = "person"
    elif case == "tiny":
        Image.new("RGB", (40, 40), (120, 160, 200)).save(path)
        match = "small|pixels"
    elif case == "extreme_aspect":
        Image.new("RGB", (2000, 200), (120, 160, 200)).save(path)
        match = "wide|tall|aspect|long"
    else:
        path.write_text("not an image")
        match = "image"
    with pytest.raises(gr.Error, match=match):
        preview(app, path, person_clip)


def test_the_photo_is_detected_when_it_arrives(app, astronaut_path, person_clip, tmp_path):
    """The image's change event detects the character at once (the session keeps it), so the
    preview that follows only reads the clip -- with the very same character as a cold preview.
    A cleared photo does nothing; a photo without a person is reported right away."""
    photo = tmp_path / "walker.png"  # not a project photo: no stored detection, the detector runs
    Image.open(astronaut_path).transpose(Image.FLIP_LEFT_RIGHT).save(photo)
    session = PoseSession.create(app.config.tmp_root)
    assert app.detect_character(str(photo), session=session) is None
    assert session.runs["reference"] == 1 and session.reference[1].pose.has_person
    assert session.workdir is None  # no file is written for it
    *_, after = preview(app, photo, person_clip, session)
    assert after is session and dict(session.runs)["reference"] == 1  # not detected again

    cold = PoseSession.create(app.config.tmp_root)
    preview(app, photo, person_clip, cold)
    assert cold.runs["reference"] == 1
    np.testing.assert_array_equal(cold.reference[1].pose.body, session.reference[1].pose.body)
    assert cold.reference[1].size == session.reference[1].size

    for blank in (None, ""):
        empty = PoseSession.create(app.config.tmp_root)
        app.detect_character(blank, session=empty)
        assert empty.reference is None and not empty.runs
    nobody = tmp_path / "nobody.png"
    Image.new("RGB", (512, 512), (120, 160, 200)).save(nobody)
    with pytest.raises(gr.Error, match="No person found in the character image"):
        app.detect_character(str(nobody), session=PoseSession.create(app.config.tmp_root))


def test_an_uploaded_clip_is_checked_when_it_arrives(app, person_clip, tmp_path, monkeypatch):
    """check_driving (the clip's upload event) reads the header: a clip over the length limit or
    not a video is refused at once; a good one is probed, and Preview finds the answer kept."""
    from steadydancer import video

    assert app.check_driving(None) is None and app.check_driving("") is None
    video._probe_file.cache_clear()
    assert app.check_driving(str(person_clip)) is None
    hits = video._probe_file.cache_info().hits
    inputs.resolve_driving(str(person_clip), "")  # what Preview does first
    assert video._probe_file.cache_info().hits == hits + 1
    monkeypatch.setattr(settings, "MAX_DRIVING_SECONDS", 1.0)
    with pytest.raises(gr.Error, match="driving_video is 2 s long; the limit is 1 s"):
        app.check_driving(str(person_clip))
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    with pytest.raises(gr.Error, match="notes.mp4"):
        app.check_driving(str(notes))


def test_an_uploaded_clip_is_decoded_when_it_arrives(app, astronaut_path, person_clip, decode_calls):
    """decode_driving (the clip's upload event) decodes the frames the first preview's detector
    needs; that preview decodes nothing and finds the same poses as a cold one; the frames are let
    go once read. A clip decoded for another length is let go, and the preview decodes its own."""
    from studio.sessions import DECODE_AHEAD_BUDGET

    cold = PoseSession.create(app.config.tmp_root)
    preview(app, astronaut_path, person_clip, cold)
    calls = decode_calls
    calls.clear()  # counted from here: the cold preview above decoded the clip itself
    session = PoseSession.create(app.config.tmp_root)
    assert app.decode_driving(str(person_clip), POSE["num_frames"], 0, "realtime", session=session) is None
    assert len(calls) == 1 and calls[0]["max_frames"] == POSE["num_frames"] and session.decoded.ended
    assert DECODE_AHEAD_BUDGET.used > 0 and session.workdir is None
    app.decode_driving(str(person_clip), POSE["num_frames"], 0, "realtime", session=session)
    assert len(calls) == 1  # decoded already
    preview(app, astronaut_path, person_clip, session)
    assert len(calls) == 1 and session.decoded is None and DECODE_AHEAD_BUDGET.used == 0
    assert_same_poses(session.driving[2].poses, cold.driving[2].poses)
    app.decode_driving(str(person_clip), POSE["num_frames"], 0, "realtime", session=session)
    assert len(calls) == 1  # the session has these poses: nothing to decode

    other = PoseSession.create(app.config.tmp_root)
    app.decode_driving(str(person_clip), 13, 0, "realtime", session=other)  # then the length changed
    assert len(calls) == 2 and DECODE_AHEAD_BUDGET.used > 0
    preview(app, astronaut_path, person_clip, other)
    assert len(calls) == 3 and DECODE_AHEAD_BUDGET.used == 0
    assert_same_poses(other.driving[2].poses, cold.driving[2].poses)

    ended = PoseSession.create(app.config.tmp_root)
    app.decode_driving(str(person_clip), POSE["num_frames"], 2, "official", session=ended)
    assert calls[-1]["fps"] == 0 and calls[-1]["max_frames"] == POSE["num_frames"] - 2
    delete_session(ended)  # closed before any preview: the frames go with it
    assert ended.decoded is None and DECODE_AHEAD_BUDGET.used == 0
    for blank in (None, "", str(astronaut_path)):  # no clip, or not a video: silent (check_driving says)
        app.decode_driving(blank, POSE["num_frames"], 0, "realtime", session=ended)
    assert len(calls) == 4


def test_a_preview_clicked_while_the_clip_decodes_reads_its_frames_as_they_come(
        app, astronaut_path, person_clip, monkeypatch):
    """One decode for the upload event and a preview started meanwhile: the preview waits for each
    frame the decode has not delivered yet."""
    import threading
    import time

    from steadydancer.pose import extract

    cold = PoseSession.create(app.config.tmp_root)
    preview(app, astronaut_path, person_clip, cold)
    calls = []
    real = extract.detection_frames
    started = threading.Event()

    def slow(*args, **kwargs):
        calls.append(kwargs)
        for frame in real(*args, **kwargs):
            started.set()
            time.sleep(0.05)
            yield frame

    monkeypatch.setattr(extract, "detection_frames", slow)
    session = PoseSession.create(app.config.tmp_root)
    upload = threading.Thread(target=app.decode_driving, args=(str(person_clip), POSE["num_frames"], 0),
                              kwargs=dict(session=session))
    upload.start()
    assert started.wait(30)
    preview(app, astronaut_path, person_clip, session)
    upload.join(30)
    assert len(calls) == 1 and session.runs["decode_on_arrival"] == 1
    assert_same_poses(session.driving[2].poses, cold.driving[2].poses)


def test_a_preview_started_while_the_photo_is_detected_waits_for_it(app, astronaut_path, person_clip,
                                                                     tmp_path, monkeypatch):
    """The photo's event and a preview clicked meanwhile share one detection (the session's lock)."""
    import threading

    from studio import sessions

    photo = tmp_path / "slow.png"
    Image.open(astronaut_path).transpose(Image.FLIP_LEFT_RIGHT).save(photo)
    started, release = threading.Event(), threading.Event()
    real = sessions.prepare_reference

    def slow(*args, **kwargs):
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(sessions, "prepare_reference", slow)
    session = PoseSession.create(app.config.tmp_root)
    upload = threading.Thread(target=app.detect_character, args=(str(photo),), kwargs=dict(session=session))
    upload.start()
    assert started.wait(30)
    started.clear()
    result = {}
    click = threading.Thread(target=lambda: result.update(out=preview(app, photo, person_clip, session)))
    click.start()
    click.join(1.0)  # the preview reads the clip meanwhile; its character thread waits for the lock
    release.set()
    upload.join(30)
    click.join(60)
    assert not started.is_set()  # the preview never started a detection of its own
    assert session.runs["reference"] == 1 and Path(result["out"][0]).is_file()


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "I;16", "L"])
def test_awkward_image_modes_are_sanitised(app, astronaut_path, person_clip, previewed, tmp_path, mode):
    src = Image.open(astronaut_path).convert("RGB")
    if mode == "RGBA":
        rgba = src.convert("RGBA")
        alpha = np.full((src.height, src.width), 255, np.uint8)
        alpha[:, :40] = 0  # a transparent strip: composited, not black garbage
        rgba.putalpha(Image.fromarray(alpha))
        img, path = rgba, tmp_path / "rgba.png"
    elif mode == "CMYK":
        img, path = src.convert("CMYK"), tmp_path / "cmyk.jpg"
    elif mode == "I;16":
        grey16 = (np.asarray(src.convert("L"), np.uint16) * 257).astype(np.uint16)
        img, path = Image.fromarray(grey16), tmp_path / "grey16.png"
    else:
        img, path = src.convert("L"), tmp_path / "grey.png"
    img.save(path)
    session = previewed[-1]
    reference = poses(app, session, path, person_clip).reference
    assert reference.image.mode == "RGB" and reference.pose.has_person
    if mode == "RGBA":  # transparent pixels composited (over white), not left as hidden colour
        assert np.asarray(reference.image)[:, :30].min() >= 250


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

GEN = dict(prompt="a person dancing", negative_prompt="", resolution="tiny", num_frames=5, num_inference_steps=2,
           guidance_scale=5.0, condition_guidance_scale=1.0, condition_window_start=0.1, condition_window_end=0.4,
           shift=3.0, seed=7, randomize_seed=False, preset="quality", smooth=0.3, repair=True, align_mode="robust",
           alignment_frame=-1, lead_in_frames=0)


def run_generate(app, image, video, session=None, progress=None, **changes):
    kw = {**GEN, **changes}
    extra = {k: kw[k] for k in ("frame_rate", "conditioning", "noise_device") if k in kw}
    return app.generate(str(image), str(video), "", kw["prompt"], kw["negative_prompt"], kw["resolution"],
                        kw["num_frames"], kw["num_inference_steps"], kw["guidance_scale"], kw["condition_guidance_scale"],
                        kw["condition_window_start"], kw["condition_window_end"], kw["shift"], kw["seed"],
                        kw["randomize_seed"], kw["preset"], kw["smooth"], kw["repair"], kw["align_mode"],
                        kw["alignment_frame"], kw["lead_in_frames"], session=session or app.session(None),
                        progress=progress, **extra)


def test_generate_without_weights_says_what_is_missing(app, astronaut_path, person_clip):
    with pytest.raises(gr.Error, match="weights are missing") as info:
        run_generate(app, astronaut_path, person_clip, resolution="480p")
    assert "Traceback" not in str(info.value)
    assert "**Generate:** unavailable here — SteadyDancer weights are missing" in app.runtime_status()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.tiny_pipeline import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "pipeline")


@pytest.fixture
def with_tiny_model(app, tiny_model):
    saved = app.config
    app.config = saved.replace(model=str(tiny_model))
    yield tiny_model
    app.config = saved


def test_generate_with_tiny_pipeline_on_cpu(app, astronaut_path, person_clip, previewed, with_tiny_model,
                                            monkeypatch):
    import steadydancer.video as video_io
    from steadydancer.video import probe_video

    session = previewed[-1]
    extracted = session.runs["extract"]
    decodes = []
    real_decoder = video_io.iter_video_frames
    monkeypatch.setattr(video_io, "iter_video_frames", lambda *a, **k: decodes.append(a) or real_decoder(*a, **k))
    video, comparison, seed, used, session = run_generate(app, astronaut_path, person_clip, session)
    assert decodes == []  # the comparison's driving panel uses the frames kept when the clip was read
    info = probe_video(video, count_frames=True)
    assert (info.num_frames, info.width, info.height) == (5, 64, 64)
    comp = probe_video(comparison, count_frames=True)
    assert comp.num_frames == 5 and comp.width > 2 * comp.height  # driving | pose | result
    assert seed == 7 and used["seed"] == 7 and used["num_inference_steps"] == 2 and used["model"] == str(with_tiny_model)
    assert used["condition_window"] == [0.1, 0.4] and used["device"] == "cpu"
    assert session.runs["extract"] == extracted  # the previewed poses were reused
    assert "**Generate:** ready on `cpu`" in app.runtime_status()

    # Same seed, same video (each run replaces the session's previous output folder: Gradio has
    # copied the files to its cache by then); a randomised seed is reported.
    first = _first_frame(video)
    again = run_generate(app, astronaut_path, person_clip, session)
    assert not Path(video).exists() and np.array_equal(_first_frame(again[0]), first)
    randomised = run_generate(app, astronaut_path, person_clip, session, randomize_seed=True)
    assert randomised[3]["seed"] == randomised[2] and 0 <= randomised[2] <= settings.SEED.maximum


def test_generate_frame_rate_conditioning_and_noise_options(app, astronaut_path, tmp_path, with_tiny_model):
    """Official frame rate: every native frame of a 30 fps clip, the video at 16 fps, said in the
    settings; the conditioning and noise generator reach the generation and the report."""
    from conftest import make_person_frames, write_clip
    from steadydancer.video import probe_video

    clip = write_clip(tmp_path / "clip30.mp4", make_person_frames(12), fps=30)
    session = app.session(None)
    video, _, _, used, _ = run_generate(app, astronaut_path, clip, session, frame_rate="official",
                                        conditioning="clean", noise_device="cpu")
    info = probe_video(video, count_frames=True)
    assert info.num_frames == 5 and info.fps == pytest.approx(16)
    assert used["fps"] == 16 and used["pose"]["frame_rate"] == "official" and used["pose"]["fps"] == 0
    assert "official -- every native frame of the 30 fps clip, played at 16 fps (0.53x speed" in used["frame_rate_note"]
    assert used["pose"]["conditioning"] == "clean" and used["noise_device"] == "cpu"
    assert used["noise_device_used"] == "cpu"
    assert session.driving[2].poses.fps == pytest.approx(30)  # native frames were read

    _, _, _, used, _ = run_generate(app, astronaut_path, clip, session)  # the defaults
    assert used["pose"]["frame_rate"] == "realtime" and used["pose"]["conditioning"] == "official"
    assert used["noise_device"] == "auto" and used["noise_device_used"] == "cpu"  # generating on the CPU
    assert "real time" in used["frame_rate_note"]
    with pytest.raises(gr.Error, match="noise_device .* must be one of"):
        run_generate(app, astronaut_path, clip, session, noise_device="tpu")


def _first_frame(path) -> np.ndarray:
    from steadydancer.video import read_video

    return read_video(path, fps=0, max_frames=1).frames[0]


def test_cancel_stops_generation_at_the_next_step(app, astronaut_path, person_clip, previewed, with_tiny_model):
    session = previewed[-1]

    class PressCancel:
        """A progress bar whose first denoising update presses Cancel."""

        def __call__(self, fraction, desc=None, **_):
            if fraction > 0.15:
                app.cancel_generation(session)

    with pytest.raises(gr.Error, match="cancelled"):
        run_generate(app, astronaut_path, person_clip, session, progress=PressCancel(), num_inference_steps=4)


def request(config, **kw):
    base = dict(prompt="", negative_prompt="", resolution="480p", num_frames=81, num_inference_steps=40,
                guidance_scale=5.0, condition_guidance_scale=1.0, condition_window_start=0.1,
                condition_window_end=0.4, shift=3.0, seed=0, randomize_seed=False, preset="quality")
    base.update(kw)
    return inputs.generation_request(**base, resolutions=config.resolutions)


def test_settings_are_validated(config):
    from steadydancer.errors import SteadyDancerInputError

    with pytest.raises(SteadyDancerInputError, match="num_inference_steps \\(Steps\\) must be between 1 and 100"):
        request(config, num_inference_steps=0)
    with pytest.raises(SteadyDancerInputError, match="ends .* before it starts"):
        request(config, condition_window_start=0.5)
    with pytest.raises(SteadyDancerInputError, match="resolution must be one of"):
        request(config, resolution="4k")
    with pytest.raises(SteadyDancerInputError, match="num_frames .* between 5 and 161, got -1"):
        request(config, num_frames=-1)
    with pytest.raises(SteadyDancerInputError, match="randomize_seed must be true or false, got 'maybe'"):
        request(config, randomize_seed="maybe")
    s = request(config, prompt="  ", negative_prompt=None, num_frames=80)
    assert s.num_frames == 77 and s.prompt == settings.DEFAULT_PROMPT and s.negative_prompt == ""  # = the official one
    assert request(config, shift=None).shift == 3.0 and request(config, shift=None, resolution="720p").shift == 5.0


def test_gpu_duration_and_estimate_follow_the_work(app, config):
    from steadydancer.generation import GenerationJob

    def job(width, height):
        return GenerationJob(None, [], None, width, height, 81, 16.0)

    short = runtime._gpu_duration(job(832, 480), request(config, num_frames=17, num_inference_steps=8), config)
    long = runtime._gpu_duration(job(832, 480), request(config), config)
    big = runtime._gpu_duration(job(1024, 576), request(config, resolution="720p"), config)
    assert 30 <= short < long <= big <= config.zero_gpu_max_seconds
    text = app.estimate_text(None, "480p", 81, 40, 5.0, 1.0, 0.1, 0.4, "quality")
    assert "81 frames" in text and "40 steps" in text
    assert "must be between" in app.estimate_text(None, "480p", 81, 0, 5.0, 1.0, 0.1, 0.4, "quality")


@pytest.fixture(scope="module")
def demo(app):
    from studio import build_demo

    return build_demo(app)


def test_blocks_expose_exactly_the_named_endpoints(demo):
    names = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert {"preview_poses", "generate"} <= names
    assert names - {"preview_poses", "generate", "load_example"} == set()


def test_sessions_have_their_own_folders_and_clean_up(app, tmp_path):
    one, two = app.session(None), app.session(None)
    assert one.workdir is None and two.workdir is None  # no folder until the session writes something
    first = one.run_dir("preview")
    two.run_dir("preview")
    assert one.workdir != two.workdir and one.workdir.parent == two.workdir.parent == app.config.tmp_root
    (first / "preview.mp4").write_bytes(b"x")
    second = one.run_dir("preview")  # a new preview replaces the previous one's files
    assert not first.exists() and second.parent == one.workdir
    delete_session(one)  # the session store's close callback when the session ends
    assert not one.workdir.exists() and two.workdir.exists() and one.reference is None
    delete_session(two)

    old = tmp_path / "session-old"
    old.mkdir()
    os.utime(old, (0, 0))
    fresh = tmp_path / "session-fresh"
    fresh.mkdir()
    sweep_old_sessions(tmp_path)
    assert not old.exists() and fresh.exists()


def test_example_motion_preview(app, astronaut_path, monkeypatch):
    """The gr.Examples entry (cached lazily): the project's motion, its poses.json, no detector."""
    monkeypatch.setattr(settings, "NUM_FRAMES", dataclasses.replace(settings.NUM_FRAMES, default=17))  # keep the test short; the app uses 81
    motions = inputs.project_motions()
    assert "dance_keyframes" in motions, "the shipped example motion (examples/dance_keyframes.*) is missing"
    preview_path, pose_path, report, poses = app.preview_example(str(astronaut_path),
                                                                 str(motions["dance_keyframes"]["video"]),
                                                                 "dance_keyframes")
    assert Path(preview_path).is_file() and Path(pose_path).is_file()
    assert "Dance keyframes" in report and "17 frames" in report


def test_a_motions_clip_is_decoded_beside_the_characters_detection(app, astronaut_path, tmp_path):
    """A shipped motion (saved poses + its clip): compute_poses keeps the clip's preview frames
    (decoded while the character is detected), so the preview decodes nothing."""
    from steadydancer.pose import outputs

    photo = tmp_path / "photo.png"  # not the project photo's bytes: its detection runs
    Image.open(astronaut_path).save(photo, compress_level=1)
    assert inputs.project_character(photo) is None
    session = PoseSession.create(tmp_path)
    options = inputs.pose_options(17, 0.3, True, "auto", -1, 0)
    result = compute_poses(session, str(photo), inputs.resolve_driving(None, "dance_keyframes"), options)
    kept = result.driving.frames
    assert kept.max_side == outputs.PREVIEW_HEIGHT and len(kept.frames) >= 17
    assert max(kept.frames[0].shape[:2]) == outputs.PREVIEW_HEIGHT
    assert session.runs["reference"] == 1 and session.runs["extract"] == 1
    fetch = outputs.driving_frame_source(result.driving, 17, options, outputs.PREVIEW_HEIGHT)
    assert fetch(16) is kept.frames[16]  # served from memory, no decoder
    # a shipped motion's frames are decoded once per process: another session reuses them, and
    # writing a preview leaves them as they were
    before = [frame.copy() for frame in kept.frames]
    other = PoseSession.create(tmp_path)
    again = compute_poses(other, str(photo), inputs.resolve_driving(None, "dance_keyframes"), options)
    assert again.driving.frames is kept
    assert again.driving.frames.frames is kept.frames
    outputs.write_pose_outputs(again, tmp_path / "files", outputs=("preview",))
    assert all(np.array_equal(a, b) for a, b in zip(before, kept.frames))
    with pytest.raises(ValueError, match="project motion"):
        motion_frames(("video", "x"), 16)


def test_zero_gpu_duration_takes_the_gpu_functions_arguments(app):
    """spaces.GPU calls the duration function with run_generation's own arguments."""
    import inspect

    gpu = inspect.signature(runtime.run_generation).parameters
    duration = inspect.signature(runtime._gpu_duration).parameters
    assert list(gpu) == list(duration)
    assert [p.default for p in gpu.values()] == [p.default for p in duration.values()]


def test_without_cuda_a_big_model_is_refused_before_loading(app, tmp_path, tiny_model):
    """No CUDA here and no explicit --device: the tiny model may run on the CPU, a 14B-sized one
    (a sparse 3 GB file stands in for its weights) is refused with what to do -- never loaded."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    big = tmp_path / "big"
    for sub in ("transformer", "vae", "text_encoder", "tokenizer", "image_encoder", "scheduler"):
        (big / sub).mkdir(parents=True)
    (big / "model_index.json").write_text("{}")
    (big / "transformer" / "config.json").write_text("{}")
    with open(big / "transformer" / "diffusion_pytorch_model.safetensors", "wb") as f:
        f.truncate(3 * 1024**3)
    saved = app.config
    try:
        app.config = saved.replace(model=str(big), device=None)
        with pytest.raises(Exception, match="No CUDA GPU was found.*its transformer weights are 3 GB"):
            runtime.check_runtime(app.config)
        assert "No CUDA GPU was found" in app.runtime_status()
        runtime.check_runtime(app.config.replace(model=str(tiny_model)))  # small enough for the CPU
    finally:
        app.config = saved


def test_a_project_photo_is_not_detected_again(app, astronaut_path, tmp_path, monkeypatch):
    """The shipped photo's stored detection (examples/astronaut.character.json) is what the detector
    gives for it now; the app finds it by the photo's bytes (Gradio serves a copy under another
    name) and then runs no detector; another photo, or another detector, is detected as always."""
    import shutil

    from steadydancer.pose import path as pose_path
    from steadydancer.pose.people import find_faces
    from studio import sessions

    record = inputs.project_character(astronaut_path)
    assert record is not None
    fresh = pose_path.prepare_reference(astronaut_path)
    # A stale record (photo, detector or its settings changed): rerun examples/make_examples.py.
    for part in ("body", "hands", "face"):
        np.testing.assert_allclose(getattr(record.pose, part), getattr(fresh.pose, part), rtol=0, atol=1e-5,
                                   err_msg=part)
    faces = find_faces(fresh.image)
    assert len(record.faces) == len(faces) == 1
    np.testing.assert_allclose(record.faces[0].box, faces[0].box, atol=1e-5)

    copy = tmp_path / "upload" / "photo.png"  # the same bytes elsewhere
    copy.parent.mkdir()
    shutil.copyfile(astronaut_path, copy)
    assert inputs.project_character(copy) == record
    changed = tmp_path / "changed.png"
    data = bytearray(astronaut_path.read_bytes())
    data[-20] ^= 1  # same size, other bytes
    changed.write_bytes(bytes(data))
    assert inputs.project_character(changed) is None

    def no_detector(*args, **kwargs):
        raise AssertionError("a detector ran for the project photo")

    monkeypatch.setattr(pose_path, "detect_reference_pose", no_detector)
    monkeypatch.setattr(sessions, "find_faces", no_detector)
    # nothing to wait for: the motion's clip is not decoded up front (the preview decodes it as it renders)
    monkeypatch.setattr(sessions, "keep_preview_frames", no_detector)
    options = inputs.pose_options(17, 0.3, True, "auto", -1, 0)
    session = PoseSession.create(tmp_path)
    result = compute_poses(session, str(copy), inputs.resolve_driving(None, "dance_keyframes"), options)
    assert session.runs["reference"] == 1 and session.people_note is None
    for part in ("body", "hands", "face"):
        np.testing.assert_array_equal(getattr(result.reference.pose, part), getattr(record.pose, part))
    assert result.reference.size == fresh.size

    # another detector version (or setting): the record is not used
    fingerprint = inputs.character_fingerprint()
    monkeypatch.setattr(inputs, "character_fingerprint", lambda: {**fingerprint, "detector": "mediapipe 0.0.1"})
    assert inputs.project_character(copy) is None
    with pytest.raises(AssertionError, match="a detector ran"):
        compute_poses(PoseSession.create(tmp_path), str(copy), inputs.resolve_driving(None, "dance_keyframes"),
                      options)


def test_the_shipped_example_preview_imports_no_detector(tmp_path):
    """Photo and motion shipped with the project: the whole preview (poses, files) runs without
    importing mediapipe at all."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from studio import inputs\n"
        "from studio.sessions import PoseSession, compute_poses\n"
        "from steadydancer.pose.path import write_pose_outputs\n"
        f"tmp = Path({str(tmp_path)!r})\n"
        "options = inputs.pose_options(17, 0.3, True, 'auto', -1, 0)\n"
        "result = compute_poses(PoseSession.create(tmp), str(inputs.EXAMPLES_DIR / 'astronaut.png'),\n"
        "                       inputs.resolve_driving(None, 'dance_keyframes'), options)\n"
        "paths = write_pose_outputs(result, tmp / 'out')\n"
        "assert all(p.stat().st_size for p in paths.values())\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mediapipe'))\n"
    )
    assert run_python(code)[-1] == "[]"
