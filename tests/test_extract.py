"""Pose extraction with mediapipe Holistic: the mapping tables, a real photo (left/right, face
points in place), no-person errors, tracking over a synthetic clip, worker segments, and the
real driving clip (integration)."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import mediapipe
import numpy as np
import pytest
from PIL import Image

from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose import extract as ex
from steadydancer.pose.extract import (
    BODY_FROM_MEDIAPIPE, PoseExtractor, blend_poses, body_from_mediapipe, extract_image_pose,
    extract_sequence, extract_video_poses, face_from_mediapipe, hand_from_mediapipe, plan_segments,
    pose_frame_from_holistic,
)
from steadydancer.pose.face68 import FACE68_FROM_MESH, IBUG68_MIRROR
from steadydancer.pose.sequence import PoseFrame, present
from steadydancer.pose.skeleton import BODY, BODY_MIRROR, LEFT_HAND, RIGHT_HAND
from tests.conftest import make_person_frames, run_python

REPO = Path(__file__).resolve().parents[1]
ASTRONAUT = REPO / "examples" / "astronaut.png"
SEATED_CLIP = REPO.parent / "shared" / "media" / "driving_seated_gestures.mp4"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut_pose(astronaut) -> PoseFrame:
    return extract_image_pose(astronaut)


def translated_frames(num_frames: int, step: int, size=(384, 320)) -> list[np.ndarray]:
    """The astronaut (scaled to 224 px) sliding right by ``step`` px per frame on a grey stage."""
    width, height = size
    person = np.asarray(Image.open(ASTRONAUT).convert("RGB").resize((224, 224), Image.BICUBIC))
    frames = []
    for t in range(num_frames):
        canvas = np.full((height, width, 3), 120, np.uint8)
        x0, y0 = 16 + step * t, height - 224 - 8
        canvas[y0:y0 + 224, x0:x0 + 224] = person
        frames.append(canvas)
    return frames


# ----------------------------------------------------------------------------------------------
# Tables and pure conversions
# ----------------------------------------------------------------------------------------------


def test_body_table_matches_mediapipe_names():
    from mediapipe.python.solutions.pose import PoseLandmark

    assert sorted(BODY[name] for name, _ in BODY_FROM_MEDIAPIPE) == sorted(set(BODY.values()) - {BODY["neck"]})
    for name, index in BODY_FROM_MEDIAPIPE:
        # mediapipe's LEFT_* are the person's left, as ours are: names must agree one to one
        assert PoseLandmark(index).name.lower() == name


def test_face_table_uses_the_right_mesh_regions():
    from mediapipe.python.solutions import face_mesh_connections as fc

    def vertices(edges):
        return {v for edge in edges for v in edge}

    table = np.array(FACE68_FROM_MESH)
    assert len(set(FACE68_FROM_MESH)) == 68 and table.max() < 468
    assert [IBUG68_MIRROR[IBUG68_MIRROR[i]] for i in range(68)] == list(range(68))
    # mediapipe's RIGHT_* regions are the person's right: iBUG 36-41 / 17-21 are the person's right
    assert set(table[36:42]) <= vertices(fc.FACEMESH_RIGHT_EYE)
    assert set(table[42:48]) <= vertices(fc.FACEMESH_LEFT_EYE)
    assert set(table[17:22]) <= vertices(fc.FACEMESH_RIGHT_EYEBROW)
    assert set(table[22:27]) <= vertices(fc.FACEMESH_LEFT_EYEBROW)
    assert set(table[48:68]) <= vertices(fc.FACEMESH_LIPS)
    assert set(table[0:17]) <= vertices(fc.FACEMESH_FACE_OVAL)
    assert set(table[[27, 28, 29, 30, 32, 33, 34]]) <= vertices(fc.FACEMESH_NOSE) | {6, 197, 5}


def test_body_conversion_threshold_neck_and_out_of_frame_points():
    lm = np.zeros((33, 4), np.float32)
    lm[:, 0] = np.linspace(0.1, 0.9, 33)
    lm[:, 1] = 0.5
    lm[:, 3] = 0.9
    lm[12, :2] = (0.3, 0.4)   # right shoulder
    lm[11, :2] = (0.7, 0.5)   # left shoulder
    lm[15, 3] = 0.29          # left wrist: below the 0.3 visibility threshold
    lm[28, :2] = (0.5, 1.3)   # right ankle outside the frame, but visible: kept as given
    body = body_from_mediapipe(lm)
    assert body.shape == (18, 3)
    np.testing.assert_allclose(body[BODY["neck"]], [0.5, 0.45, 0.9], atol=1e-6)
    np.testing.assert_allclose(body[BODY["right_shoulder"], :2], [0.3, 0.4])
    assert np.isnan(body[BODY["left_wrist"], :2]).all() and body[BODY["left_wrist"], 2] == 0
    np.testing.assert_allclose(body[BODY["right_ankle"], :2], [0.5, 1.3])
    np.testing.assert_allclose(body[BODY["left_eye"], 0], lm[2, 0])
    np.testing.assert_allclose(body[BODY["right_ear"], 0], lm[8, 0])

    lm[12, 3] = 0.1  # one shoulder missing -> no neck
    body = body_from_mediapipe(lm)
    assert not present(body)[BODY["neck"]] and body[BODY["neck"], 2] == 0
    assert not present(body_from_mediapipe(None)).any()


def test_hand_and_face_conversion():
    rng = np.random.default_rng(0)
    hand = rng.random((21, 3)).astype(np.float32)
    out = hand_from_mediapipe(hand)
    np.testing.assert_array_equal(out[:, :3], hand)  # same order, z kept
    assert (out[:, 3] == 1).all()
    assert not present(hand_from_mediapipe(None)).any()

    mesh = rng.random((478, 3)).astype(np.float32)  # refined mesh (iris points) works too
    face = face_from_mediapipe(mesh)
    np.testing.assert_array_equal(face[:, :2], mesh[list(FACE68_FROM_MESH), :2])
    assert not present(face_from_mediapipe(None)).any()
    with pytest.raises(ValueError):
        face_from_mediapipe(mesh[:100])


def test_blend_poses_mixes_present_points_and_keeps_lonely_ones():
    a, b = PoseFrame.empty(), PoseFrame.empty()
    a.body[0] = (0.2, 0.2, 1.0)
    b.body[0] = (0.4, 0.6, 0.5)
    a.body[1] = (0.1, 0.1, 0.9)       # only in a
    b.hands[LEFT_HAND, 0] = (0.5, 0.5, 0.1, 1.0)  # only in b
    out = blend_poses(a, b, 0.25)
    np.testing.assert_allclose(out.body[0], [0.25, 0.3, 0.875])
    np.testing.assert_allclose(out.body[1], [0.1, 0.1, 0.9])
    np.testing.assert_allclose(out.hands[LEFT_HAND, 0], [0.5, 0.5, 0.1, 1.0])
    assert not present(out.face).any()


def test_plan_segments():
    assert plan_segments(None, 2) == [0]
    assert plan_segments(40, 2) == [0]  # too short to split
    assert plan_segments(100, 1) == [0]
    assert plan_segments(100, 2) == [0, 50]
    assert plan_segments(1000, 2, max_segment=300) == [0, 250, 500, 750]


# ----------------------------------------------------------------------------------------------
# A real photo
# ----------------------------------------------------------------------------------------------


def test_models_are_bundled_and_nothing_is_fetched(monkeypatch, astronaut):
    from mediapipe.python.solutions import download_utils

    def no_network(*args, **kwargs):
        raise AssertionError("pose extraction tried to reach the network")

    monkeypatch.setattr(download_utils, "download_oss_model", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    root = ex.check_bundled_models()
    assert (root / "modules/pose_landmark/pose_landmark_full.tflite").is_file()
    with PoseExtractor(static_image_mode=True) as extractor:
        assert extractor(astronaut).has_person
        assert extractor.describe()["model_complexity"] == 1


def test_astronaut_body_left_right_and_neck(astronaut_pose):
    body = astronaut_pose.body
    px = body[:, :2] * 512
    ok = present(body)
    for name in ("nose", "neck", "right_shoulder", "left_shoulder", "right_eye", "left_eye",
                 "right_ear", "left_ear"):
        assert ok[BODY[name]], name
    # She faces the camera: her right side is on the image's left.
    for part in ("shoulder", "eye", "ear"):
        assert px[BODY[f"right_{part}"], 0] < px[BODY[f"left_{part}"], 0] - 10, part
    assert px[BODY["right_shoulder"], 0] < 160 and px[BODY["left_shoulder"], 0] > 260
    # neck = midpoint of the shoulders
    np.testing.assert_allclose(body[BODY["neck"], :2],
                               body[[BODY["right_shoulder"], BODY["left_shoulder"]], :2].mean(axis=0), atol=1e-6)
    # head above shoulders, eyes above nose; nose roughly where her nose is
    assert px[BODY["nose"], 1] < px[BODY["neck"], 1] - 60
    assert px[BODY["right_eye"], 1] < px[BODY["nose"], 1]
    assert np.hypot(*(px[BODY["nose"]] - (222, 128))) < 20
    # legs are out of the frame: missing, not invented
    for name in ("right_knee", "left_knee", "right_ankle", "left_ankle"):
        assert not ok[BODY[name]], name
    assert (body[ok, 2] >= ex.VISIBILITY_THRESHOLD).all() and (body[~ok, 2] == 0).all()


def test_astronaut_face68_in_place(astronaut_pose):
    face = astronaut_pose.face[:, :2] * 512
    assert present(astronaut_pose.face).all()
    x, y = face[:, 0], face[:, 1]
    # inside her face (hair line to chin, cheek to cheek, measured on the photo)
    assert x.min() > 165 and x.max() < 290 and y.min() > 75 and y.max() < 190
    jaw, brows, nose, eyes, mouth = (face[0:17], face[17:27], face[27:36], face[36:48], face[48:68])
    eye_y = eyes[:, 1].mean()
    # vertical order: brows < eyes < nose tip < mouth < chin
    assert brows[:, 1].mean() < eye_y < face[30, 1] < mouth[:, 1].mean() < face[8, 1]
    assert face[8, 1] == jaw[:, 1].max()  # the chin is the lowest jaw point
    assert (jaw[2:15, 1] > eye_y).all()  # the jaw runs below the eyes (0/16 are at eye height)
    assert abs(jaw[0, 1] - eye_y) < 15 and abs(jaw[16, 1] - eye_y) < 15
    # left/right: person's right (iBUG 0, 17-21, 36-41, 48) on the image's left
    assert x[0] < x[8] < x[16]
    assert face[17:22, 0].mean() < face[22:27, 0].mean()
    assert face[36:42, 0].mean() < face[27:31, 0].mean() < face[42:48, 0].mean()
    assert x[36] < x[39] < x[42] < x[45] and x[48] < x[51] < x[54] and x[31] < x[33] < x[35]
    # lids: upper above lower; lips: upper above lower
    assert y[37] < y[41] and y[38] < y[40] and y[43] < y[47] and y[44] < y[46]
    assert y[51] < y[62] <= y[66] < y[57]
    # nose bridge runs downwards
    assert y[27] < y[28] < y[29] < y[30] < y[33]


def test_flipped_photo_gives_the_mirrored_pose(astronaut, astronaut_pose):
    """Mirror the photo: every point must come back as its mirror partner (left <-> right), which
    checks the left/right handling of the body and the symmetry of the face table."""
    flipped = extract_image_pose(np.ascontiguousarray(astronaut[:, ::-1]))
    body = flipped.body[list(BODY_MIRROR)]
    body[:, 0] = 1 - body[:, 0]
    both = present(body) & present(astronaut_pose.body)
    assert both.sum() >= 8
    err = np.linalg.norm(body[both, :2] - astronaut_pose.body[both, :2], axis=-1) * 512
    assert err.max() < 30  # a left/right swap would be ~190 px at the shoulders

    face = flipped.face[list(IBUG68_MIRROR)]
    face[:, 0] = 1 - face[:, 0]
    iod = np.linalg.norm(astronaut_pose.face[36, :2] - astronaut_pose.face[45, :2]) * 512
    err = np.linalg.norm(face[:, :2] - astronaut_pose.face[:, :2], axis=-1) * 512
    assert err.max() < 0.15 * iod and np.median(err) < 0.06 * iod


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_no_person_in_image_raises(kind):
    rng = np.random.default_rng(0)
    image = (np.full((360, 480, 3), 128, np.uint8) if kind == "blank"
             else rng.integers(0, 256, (360, 480, 3), dtype=np.uint8))
    with pytest.raises(SteadyDancerInputError, match="No person found in the character image"):
        extract_image_pose(image)


def test_bad_image_input():
    with PoseExtractor(static_image_mode=True) as extractor:
        with pytest.raises(ValueError, match="uint8"):
            extractor(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError):
        extract_image_pose(np.zeros((32, 32, 2), np.uint8))


# ----------------------------------------------------------------------------------------------
# Sequences
# ----------------------------------------------------------------------------------------------


def test_tracking_follows_the_translation():
    step = 5
    frames = translated_frames(14, step)
    calls = []
    seq = extract_sequence(frames, fps=16, width=384, height=320, progress=lambda f, m: calls.append(f),
                           workers=1)
    assert (len(seq), seq.fps, seq.width, seq.height) == (14, 16, 384, 320)
    assert seq.frames_with_person().all()
    assert seq.meta["detector"] == "mediapipe-holistic" and seq.meta["frames_with_person"] == 14
    assert seq.meta["workers"] == 1 and seq.meta["detect_size"] == [384, 320]
    t = np.arange(14)
    for name in ("nose", "neck", "right_shoulder", "left_shoulder"):
        x = seq.body[:, BODY[name], 0] * 384
        assert np.isfinite(x).all(), name
        slope, offset = np.polyfit(t, x, 1)
        assert abs(slope - step) < 0.15 * step, (name, slope)
        assert np.abs(x - (slope * t + offset)).max() < 4, name
    # face follows too, and y stays put
    face_x = np.nanmean(seq.face[:, :, 0], axis=1) * 384
    assert abs(np.polyfit(t, face_x, 1)[0] - step) < 0.15 * step
    assert np.ptp(seq.body[:, BODY["neck"], 1] * 320) < 4
    assert calls and calls[-1] == 1.0 and all(0 <= f <= 1 for f in calls)
    assert calls == sorted(calls)


def test_segments_on_two_workers_match_one(monkeypatch):
    """Two tracking workers on two segments (with a warm-up cross-fade) give the same poses as
    one tracker, up to tracker noise, and every frame comes back in order."""
    monkeypatch.setattr(ex, "MIN_SEGMENT_FRAMES", 8)
    monkeypatch.setattr(ex, "WARMUP_FRAMES", 4)
    frames = translated_frames(20, 4)
    one = extract_sequence(frames, fps=16, width=384, height=320, workers=1)
    two = extract_sequence(iter(frames), fps=16, width=384, height=320, num_frames=20, workers=2)
    assert two.meta["workers"] == 2 and two.meta["segment_starts"] == [0, 10]
    assert two.meta["warmup_frames"] == 4
    assert len(two) == 20 and two.frames_with_person().all()
    np.testing.assert_array_equal(two.body[:6], one.body[:6])  # before the warm-up: identical
    sure = (one.body[..., 2] > 0.7) & (two.body[..., 2] > 0.7)  # uncertain wrists may wander
    assert sure.sum() > 20 * 8
    err = np.linalg.norm(two.body[..., :2] - one.body[..., :2], axis=-1)[sure] * 384
    assert np.median(err) < 3 and err.max() < 15


def test_pipelined_graph_gives_exactly_the_bare_detectors_landmarks():
    """detect_batch sends several frames before it waits; every landmark must still equal the
    plain ``Holistic.process`` loop's, bit for bit (the tracker's state, filters and timestamps
    are the same), through extract_sequence's batching as well (one worker: no seam)."""
    from mediapipe.python.solutions import holistic

    frames = make_person_frames(40, (320, 384)) + [np.full((384, 320, 3), 120, np.uint8)] * 3 \
        + make_person_frames(6, (320, 384))  # the person leaves and comes back: a re-detection
    with holistic.Holistic(static_image_mode=False, model_complexity=ex.MODEL_COMPLEXITY) as graph:
        bare = [pose_frame_from_holistic(graph.process(frame)) for frame in frames]
    with PoseExtractor(static_image_mode=False) as extractor:
        batched = extractor.detect_batch(frames[:5]) + extractor.detect_batch(frames[5:])
        assert extractor.last_detect_size == (320, 384)
    seq = extract_sequence(iter(frames), fps=16, width=320, height=384, num_frames=len(frames), workers=1)
    assert sum(pose.has_person for pose in bare) == len(frames) - 3
    for name, poses in (("detect_batch", batched), ("extract_sequence", list(seq))):
        for k, (a, b) in enumerate(zip(bare, poses)):
            for part in ("body", "hands", "face"):
                np.testing.assert_array_equal(getattr(a, part), getattr(b, part), err_msg=f"{name} frame {k} {part}")


def test_the_private_mediapipe_names_the_pipelined_graph_uses():
    """detect_batch drives SolutionBase's graph directly (mediapipe 0.10.21): pin the names."""
    from mediapipe.python.solutions import holistic

    with holistic.Holistic(static_image_mode=False, model_complexity=ex.MODEL_COMPLEXITY) as graph:
        for name in ("_graph", "_make_packet", "_input_stream_type_info", "_output_stream_type_info",
                     "_get_packet_content", "_simulated_timestamp", "_graph_outputs"):
            assert hasattr(graph, name), name
        assert list(graph._input_stream_type_info) == ["image"]
        assert {"pose_landmarks", "left_hand_landmarks", "right_hand_landmarks", "face_landmarks"} <= set(
            graph._output_stream_type_info)
        assert graph._simulated_timestamp == 0
        graph.process(np.zeros((64, 64, 3), np.uint8))
        assert graph._simulated_timestamp == 33333  # the interval detect_batch continues with


def test_default_workers():
    assert [ex.default_workers(c) for c in (1, 2, 3, 4, 8, 64)] == [1, 1, 1, 2, 2, 2]


def test_detector_errors_propagate_without_hanging(monkeypatch):
    frames = translated_frames(6, 4)
    real_detect = PoseExtractor.detect_batch
    count = [0]

    def failing_detect(self, images):
        count[0] += len(images)
        if count[0] >= 3:
            raise RuntimeError("detector exploded")
        return real_detect(self, images)

    monkeypatch.setattr(PoseExtractor, "detect_batch", failing_detect)
    with pytest.raises(RuntimeError, match="detector exploded"):
        extract_sequence(frames, fps=16, width=384, height=320, workers=1)
    with pytest.raises(ValueError, match="uint8"):
        extract_sequence([np.zeros((8, 8, 3), np.float32)], fps=16, width=8, height=8)


def test_video_poses_from_a_clip(person_clip):
    seq = extract_video_poses(person_clip, fps=16)
    assert (len(seq), seq.fps, seq.width, seq.height) == (24, 16, 320, 384)
    assert seq.frames_with_person().all()
    assert seq.meta["source"] == person_clip.name and seq.meta["detector_version"] == mediapipe.__version__
    # the clip sways x by 24 px * sin(2 pi t / 24): the neck follows it
    t = np.arange(24)
    neck_x = seq.body[:, BODY["neck"], 0] * 320
    expected = 24 * np.sin(2 * np.pi * t / 24)
    assert np.corrcoef(neck_x, expected)[0, 1] > 0.95
    assert abs(np.ptp(neck_x) - 48) < 10


def test_video_without_person_raises(tmp_path):
    import imageio_ffmpeg

    path = tmp_path / "empty.mp4"
    writer = imageio_ffmpeg.write_frames(str(path), (160, 128), fps=16, macro_block_size=1)
    writer.send(None)
    for k in range(8):
        writer.send(np.full((128, 160, 3), 40 + 10 * k, np.uint8))
    writer.close()
    with pytest.raises(SteadyDancerInputError, match="No person found in most frames of the driving video"):
        extract_video_poses(path)


# ----------------------------------------------------------------------------------------------
# The real driving clip
# ----------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_real_driving_clip_hands_and_sides():
    if not SEATED_CLIP.is_file():
        pytest.skip(f"real media not available: {SEATED_CLIP} does not exist (it is never committed)")
    seq = extract_video_poses(SEATED_CLIP, fps=16, max_frames=48)
    assert (len(seq), seq.width, seq.height) == (48, 720, 1280)
    assert seq.frames_with_person().mean() > 0.95
    assert present(seq.face).all(axis=1).mean() > 0.5
    hands = present(seq.hands).all(axis=2)  # (T, 2)
    assert hands.mean() > 0.6
    # hand 0 (the person's left) hangs from the body's left wrist, hand 1 from the right one
    for side, own, other in ((LEFT_HAND, "left_wrist", "right_wrist"), (RIGHT_HAND, "right_wrist", "left_wrist")):
        wrist = seq.hands[:, side, 0, :2]
        d_own = np.linalg.norm(wrist - seq.body[:, BODY[own], :2], axis=-1)
        d_other = np.linalg.norm(wrist - seq.body[:, BODY[other], :2], axis=-1)
        ok = np.isfinite(d_own) & np.isfinite(d_other)
        assert ok.sum() > 20
        assert (d_own[ok] < d_other[ok]).mean() > 0.9
    # she faces the camera: her left hand is on the image's right
    both = hands.all(axis=1)
    assert (seq.hands[both, LEFT_HAND, 0, 0] > seq.hands[both, RIGHT_HAND, 0, 0]).mean() > 0.8
    assert np.isfinite(seq.hands[hands[:, LEFT_HAND], LEFT_HAND, :, 2]).all()  # depth kept


def test_a_worker_with_several_segments_restarts_its_tracker(monkeypatch):
    """A long clip has more segments than workers: a worker starting its next segment gets a new
    graph (reset). Nothing hangs, every frame comes back, and a restarted segment's first frames
    (before any cross-fade) equal a fresh tracker's on the same frames."""
    import threading

    monkeypatch.setattr(ex, "MIN_SEGMENT_FRAMES", 8)
    monkeypatch.setattr(ex, "WARMUP_FRAMES", 0)
    monkeypatch.setattr(ex, "plan_segments", lambda n, workers, max_segment=None: [0, 8, 16, 24])
    frames = make_person_frames(32, (320, 384))
    resets = []
    real_reset = PoseExtractor.reset
    monkeypatch.setattr(PoseExtractor, "reset", lambda self: (resets.append(1), real_reset(self)))
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("seq", extract_sequence(
        iter(frames), fps=16, width=320, height=384, num_frames=32, workers=2)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "extraction hung on a tracker restart"
    seq = out["seq"]
    assert len(seq) == 32 and seq.meta["segment_starts"] == [0, 8, 16, 24] and len(resets) == 2
    with PoseExtractor(static_image_mode=False) as fresh:
        expected = fresh.detect_batch(frames[16:24])
    np.testing.assert_array_equal(seq.body[16:24], np.stack([pose.body for pose in expected]))


def test_a_process_that_forgot_to_close_an_extractor_still_exits(tmp_path):
    """Closing a graph while the interpreter shuts down hung the process (the graph's threads wait
    for the GIL): PoseExtractor.__del__ leaves it to the OS then."""
    code = ("import numpy as np\nfrom steadydancer.pose.extract import PoseExtractor\n"
            "e = PoseExtractor(static_image_mode=True)\ne(np.full((64, 64, 3), 90, np.uint8))\nprint('done')\n")
    assert run_python(code, timeout=120) == ["done"]


def test_mediapipe_is_imported_without_pyplot(astronaut_path):
    """import_mediapipe keeps matplotlib.pyplot (imported by mediapipe's drawing helpers, unused
    here) out of the process, the detector works, and pyplot is still real wherever it is used."""
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from steadydancer.pose.extract import extract_image_pose, import_mediapipe\n"
        f"pose = extract_image_pose(np.asarray(Image.open({str(astronaut_path)!r}).convert('RGB')))\n"
        "assert pose.has_person\n"
        "assert 'mediapipe' in sys.modules and 'matplotlib.pyplot' not in sys.modules\n"
        "from mediapipe.python.solutions import drawing_utils\n"
        "assert drawing_utils.plt.__name__ == 'matplotlib.pyplot'\n"
        "figure = drawing_utils.plt.figure  # first use: the real pyplot\n"
        "import matplotlib.pyplot as plt\n"
        "assert figure is plt.figure and type(plt).__name__ == 'module'\n"
        "print('ok')\n"
    )
    assert run_python(code, timeout=120)[-1] == "ok"
