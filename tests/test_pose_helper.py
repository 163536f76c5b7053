"""The render helper process (steadydancer.pose.helper): a condition video drawn and encoded
outside this process's GIL is the same file as one drawn by threads here; Cancel reaches it; a
helper that dies mid-video is replaced by drawing here; its errors come back; the CLI and the app
start it. (conftest turns helpers off for every other test: ``STEADYDANCER_RENDER_HELPERS=0``.)"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from steadydancer.errors import SteadyDancerInputError
from steadydancer.pose import helper
from steadydancer.pose.outputs import OutputsCancelled, condition_job, condition_renderer
from steadydancer.pose.path import PoseOptions, run_pose_path, write_pose_outputs
from steadydancer.video import CONDITION_ENCODING

START_SECONDS = 60  # a helper's start-up is ~0.3 s; a loaded CI machine gets room


@pytest.fixture(scope="module")
def result(person_clip, astronaut_path):
    return run_pose_path(astronaut_path, person_clip, PoseOptions(lead_in_frames=2, seed=5))


@pytest.fixture
def one_helper():
    """One started, ready helper for the test; none afterwards."""
    helper.stop_helpers()
    assert helper.start_helpers(1) == 1
    assert helper.wait_for_helpers(START_SECONDS)
    yield
    helper.stop_helpers()


@pytest.fixture
def jobs(monkeypatch):
    """Counts the videos handed to a helper."""
    seen = []
    real = helper.RenderHelper.run

    def run(self, job, abort, on_progress):
        seen.append(job)
        return real(self, job, abort, on_progress)

    monkeypatch.setattr(helper.RenderHelper, "run", run)
    return seen


def digests(paths) -> dict[str, str]:
    return {key: hashlib.sha256(path.read_bytes()).hexdigest() for key, path in paths.items()}


@pytest.fixture(scope="module")
def threads_only(result, tmp_path_factory):
    """The five files drawn by threads of this process (no helper)."""
    helper.stop_helpers()
    return digests(write_pose_outputs(result, tmp_path_factory.mktemp("threads")))


def test_a_helper_writes_the_same_files_as_threads(result, threads_only, one_helper, jobs, tmp_path):
    paths = write_pose_outputs(result, tmp_path)
    assert [job.path for job in jobs] == [str(paths["positive"])]  # one helper: one video, the others here
    assert digests(paths) == threads_only
    # The helper is free again: the next call hands it a video too.
    write_pose_outputs(result, tmp_path / "again", outputs=("negative",))
    assert len(jobs) == 2 and digests({"n": tmp_path / "again" / "negative_pose.mp4"}) == {"n": threads_only["negative"]}


def test_cancel_reaches_the_helper_and_removes_its_file(result, threads_only, one_helper, jobs, tmp_path):
    cancel = threading.Event()

    def progress(fraction, message):
        if fraction > 0:
            cancel.set()

    with pytest.raises(OutputsCancelled):
        write_pose_outputs(result, tmp_path / "cut", outputs=("positive",), progress=progress, cancel=cancel)
    assert len(jobs) == 1 and not list((tmp_path / "cut").glob("*.mp4"))
    paths = write_pose_outputs(result, tmp_path / "next", outputs=("positive",))  # the helper still works
    assert len(jobs) == 2 and digests(paths)["positive"] == threads_only["positive"]


def test_a_helper_that_dies_mid_video_is_replaced_by_drawing_here(result, threads_only, one_helper, jobs,
                                                                  tmp_path):
    (pid,) = helper.helper_pids()
    killed = []

    def progress(fraction, message):
        if fraction > 0 and not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    paths = write_pose_outputs(result, tmp_path, outputs=("positive", "negative"), progress=progress)
    assert killed and len(jobs) == 1
    assert digests(paths) == {key: threads_only[key] for key in ("positive", "negative")}
    # The next start replaces it.
    assert helper.start_helpers(1) == 1 and helper.wait_for_helpers(START_SECONDS)
    assert helper.helper_pids() != [pid]


def test_the_helpers_error_is_raised_here_and_the_helper_goes_on(result, one_helper, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    job = condition_job(blocker / "x.mp4", result.aligned.positive, result.reference, result.options,
                               16.0, CONDITION_ENCODING)
    worker = helper.take_helper()
    try:
        with pytest.raises(OSError):
            worker.run(job, threading.Event(), lambda n: None)
        frames = []
        job = condition_job(tmp_path / "ok.mp4", result.aligned.positive, result.reference, result.options,
                                   16.0, CONDITION_ENCODING)
        assert worker.run(job, threading.Event(), frames.append) == len(result.aligned.positive)
        assert frames == list(range(1, len(result.aligned.positive) + 1))
    finally:
        helper.give_back(worker)


def test_the_job_draws_what_condition_renderer_draws(result):
    job = condition_job("x.mp4", result.aligned.positive, result.reference, result.options, 16.0,
                               CONDITION_ENCODING)
    from steadydancer.pose.render import render_resized

    frame = result.aligned.positive[3]
    drawn = render_resized(frame, job.canvas, job.size, draw_face=job.draw_face)
    assert (drawn == condition_renderer(result.reference, result.options)(frame)).all()


def test_helper_count_from_the_environment(monkeypatch):
    monkeypatch.setenv(helper.HELPERS_ENV, "0")
    assert helper.default_helpers() == 0
    monkeypatch.setenv(helper.HELPERS_ENV, "2")
    assert helper.default_helpers() == 2
    monkeypatch.delenv(helper.HELPERS_ENV)
    assert helper.default_helpers() == (1 if (os.cpu_count() or 1) >= 2 and len(os.sched_getaffinity(0)) >= 2 else 0)
    monkeypatch.setenv(helper.HELPERS_ENV, "many")
    with pytest.raises(SteadyDancerInputError, match=helper.HELPERS_ENV):
        helper.default_helpers()


def test_the_app_starts_a_helper(monkeypatch, tmp_path):
    from studio import AppConfig, Studio

    helper.stop_helpers()
    monkeypatch.setenv(helper.HELPERS_ENV, "1")
    try:
        Studio(AppConfig.from_env().replace(tmp_root=tmp_path))
        assert len(helper.helper_pids()) == 1
    finally:
        helper.stop_helpers()


def test_the_cli_writes_the_same_files_with_its_helper(result, threads_only, person_clip, astronaut_path, tmp_path):
    """``python -m steadydancer pose`` starts a helper (on 2+ cores, unless turned off): the files
    are those drawn by threads, and the helper ends with the command."""
    env = {k: v for k, v in os.environ.items() if k != helper.HELPERS_ENV}
    env[helper.HELPERS_ENV] = "1"
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "steadydancer", "pose", "--image", str(astronaut_path),
                           "--video", str(person_clip), "--lead-in", "2", "--seed", "5", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = {"positive": "aligned_pose.mp4", "negative": "negative_pose.mp4"}
    assert digests({key: out / name for key, name in files.items()}) == {k: threads_only[k] for k in files}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_use_the_parents_helper(one_helper):
    """ZeroGPU forks the app's process for its GPU work: the copy must not talk to (or end) the
    parent's helper through the inherited pipes."""
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if it sees no helper of its own
        ok = helper.helper_pids() == [] and helper.take_helper() is None
        helper.stop_helpers()
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    worker = helper.take_helper()  # the parent's helper is untouched and still works
    try:
        assert worker is not None and worker.alive
    finally:
        helper.give_back(worker)


def test_a_helper_whose_parent_goes_stops_and_removes_its_file(result, one_helper, tmp_path):
    """The parent ended mid-video (its end closes the helper's stdin): the helper stops at the next
    frame, removes the unfinished file and exits."""
    worker = helper.take_helper()
    job = condition_job(tmp_path / "cut.mp4", result.aligned.positive, result.reference, result.options, 16.0,
                        CONDITION_ENCODING)

    def progress(frames):
        if frames == 1:
            worker.proc.stdin.close()

    try:
        assert worker.run(job, threading.Event(), progress) is None  # it says it stopped (it can still)
        assert worker.proc.wait(timeout=30) == 0
    finally:
        helper.give_back(worker)
    assert not (tmp_path / "cut.mp4").exists()


def test_a_helper_that_cannot_start_is_not_started_again(result, threads_only, monkeypatch, capfd, tmp_path):
    """A helper that ends before it is ready (a broken install): said once on stderr, never
    started again in this process, and the videos are drawn here."""
    helper.stop_helpers()
    monkeypatch.setattr(helper, "_CANNOT_START", [])
    monkeypatch.setattr(helper.RenderHelper, "CODE", "import sys; sys.exit(3)")
    try:
        assert helper.start_helpers(1) == 1
        deadline = time.monotonic() + START_SECONDS
        while helper.start_helpers(1) and time.monotonic() < deadline:  # until it has ended
            time.sleep(0.05)
        assert helper.start_helpers(1) == 0 and helper.helper_pids() == []
        assert capfd.readouterr().err.count("ended as it started (exit status 3") == 1
        assert helper.take_helper() is None
        assert digests(write_pose_outputs(result, tmp_path)) == threads_only
    finally:
        helper.stop_helpers()
