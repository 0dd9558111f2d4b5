"""The camera agent against a real broker (Tansu): batches, ordering, outages; `vigil camera`
on a file that ends and on a live stream (MJPEG over HTTP) that drops."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest

from streams.broker import EmbeddedBroker
from streams.camera import CameraAgent, load_replay, open_source
from streams.errors import InputError
from streams.readback import read_topic
from streams.schemas import decode_frame_batch
from streams.settings import CameraSettings
from streams.topics import FRAMES
from vigil.sources import SOURCES


@pytest.fixture(scope="module")
def clip_frames(video_dir: Path) -> list[np.ndarray]:
    source, live = open_source(str(video_dir / "single_face.mp4"), fps=30)
    assert not live
    return list(source)


def seqs_of(records, driver: str) -> list[int]:
    out = []
    for r in records:
        if r.key == driver.encode():
            header, images = decode_frame_batch(r.value)
            assert len(images) == len(header.frames)
            out += [f.seq for f in header.frames]
    return out


def test_file_source_is_published_in_ordered_batches(kafka_broker, clip_frames) -> None:
    agent = CameraAgent(kafka_broker.bootstrap, "cam-file", "van-1", fps=30, batch=8)
    stats = agent.run(iter(clip_frames), paced=False)
    assert stats.frames_captured == stats.frames_sent == 72
    records = [r for r in read_topic(kafka_broker.bootstrap, FRAMES.name)
               if r.key == b"cam-file"]
    # Keyed by driver: one partition, in order, every frame once.
    assert len({r.partition for r in records}) == 1
    assert seqs_of(records, "cam-file") == list(range(72))
    header, images = decode_frame_batch(records[0].value)
    assert (header.driver_id, header.vehicle_id, header.fps) == ("cam-file", "van-1", 30.0)
    assert header.frames[0].width == 640 and header.frames[0].height == 360
    decoded = cv2.imdecode(np.frombuffer(images[0], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (360, 640, 3)
    # An 8-frame 640x360 batch stays well under 1 MB (raw JPEG bytes, no base64).
    assert all(len(r.value) < 1_000_000 for r in records)
    captured = [f.captured_at for r in records for f in decode_frame_batch(r.value)[0].frames]
    assert captured == sorted(captured)


def test_a_replayed_recording_is_sent_as_the_jpegs_it_is(kafka_broker, video_dir: Path,
                                                           tmp_path: Path) -> None:
    """The bench's replaying cameras: a video's frames are encoded once at load, a folder's
    JPEGs are sent byte for byte, over and over."""
    from_video = load_replay(video_dir / "single_face.mp4", max_frames=10)
    assert len(from_video) == 10 and (from_video[0].width, from_video[0].height) == (640, 360)
    # At 10 fps, every third frame of the 30 fps recording: it plays at its own speed.
    assert len(load_replay(video_dir / "single_face.mp4", fps=10)) == 24
    for i, frame in enumerate(from_video[:3]):
        (tmp_path / f"{i:03d}.jpg").write_bytes(frame.jpeg)
    (tmp_path / "notes.txt").write_text("not a frame")
    replay = load_replay(tmp_path)
    assert [f.jpeg for f in replay] == [f.jpeg for f in from_video[:3]]
    agent = CameraAgent(kafka_broker.bootstrap, "cam-replay", "van-1", fps=30, batch=4)
    stats = agent.run(itertools.cycle(replay), paced=False, max_frames=8)
    assert stats.frames_sent == 8
    records = [r for r in read_topic(kafka_broker.bootstrap, FRAMES.name)
               if r.key == b"cam-replay"]
    sent = [image for r in records for image in decode_frame_batch(r.value)[1]]
    assert sent == [replay[i % 3].jpeg for i in range(8)]


def test_a_replay_source_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no replay source"):
        load_replay(tmp_path / "missing")
    with pytest.raises(InputError, match="no frames to replay"):
        load_replay(tmp_path)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match=r"broken\.jpg is not a readable JPEG"):
        load_replay(tmp_path)


def test_a_scheme_source_is_the_injected_opener_paced_by_the_agent() -> None:
    calls = []

    def opener(rest: str, fps: float, seed: int) -> Iterator[np.ndarray]:
        calls.append((rest, fps, seed))
        return iter([np.zeros((2, 2, 3), np.uint8)])

    source, live = open_source("fake:alert:7", 12.0, seed=3, schemes={"fake": opener})
    assert not live and calls == [("alert:7", 12.0, 3)] and len(list(source)) == 1


def test_simulator_source_streams_frames(kafka_broker) -> None:
    source, _ = open_source("sim:drowsy:5", fps=10, schemes=SOURCES)
    agent = CameraAgent(kafka_broker.bootstrap, "cam-sim", "van-2", fps=10, batch=4)
    agent.run(source, paced=False, max_frames=12)
    records = read_topic(kafka_broker.bootstrap, FRAMES.name)
    assert seqs_of(records, "cam-sim") == list(range(12))


class Gate:
    """A frame source the test can pause."""

    def __init__(self, frames: list[np.ndarray]) -> None:
        self.frames, self.open = frames, threading.Event()
        self.open.set()

    def __iter__(self) -> Iterator[np.ndarray]:
        k = 0
        while True:
            self.open.wait()
            yield self.frames[k % len(self.frames)]
            k += 1


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def run_outage(clip_frames, max_buffer_s: float, outage_frames: int):
    broker = EmbeddedBroker().start()
    broker.create_topics()
    gate = Gate(clip_frames)
    agent = CameraAgent(broker.bootstrap, "cam-outage", "van-3", fps=20, batch=4,
                        settings=CameraSettings(max_buffer_s=max_buffer_s, send_timeout_s=2))
    total = 40 + outage_frames + 20
    runner = threading.Thread(target=agent.run, args=(iter(gate), True, total))
    runner.start()
    try:
        wait_for(lambda: agent.stats.frames_sent >= 40)
        gate.open.clear()
        # Everything batched is acknowledged (a part-filled batch waits in capture).
        wait_for(lambda: agent.buffered_frames == 0
                 and agent.stats.frames_captured - agent.stats.frames_sent < agent.batch)
        before = seqs_of(read_topic(broker.bootstrap, FRAMES.name, idle_s=1), "cam-outage")
        broker.stop()  # outage: capture goes on, the outbox fills
        gate.open.set()
        wait_for(lambda: agent.stats.frames_captured >= len(before) + outage_frames)
        broker.start()  # same port; an empty broker, as memory storage restarts
        broker.create_topics()
        runner.join(timeout=60)
        assert not runner.is_alive()
        after = seqs_of(read_topic(broker.bootstrap, FRAMES.name, idle_s=1), "cam-outage")
        return agent, total, before, after
    finally:
        agent.stop()
        broker.stop()


def test_broker_restart_loses_no_frame_within_the_buffer(clip_frames) -> None:
    agent, total, before, after = run_outage(clip_frames, max_buffer_s=30, outage_frames=30)
    assert agent.stats.send_failures > 0  # the outage was real
    assert agent.stats.frames_dropped == 0
    assert before == list(range(len(before)))
    assert sorted(set(before + after)) == list(range(total))


def test_outage_longer_than_the_buffer_drops_oldest_frames_and_counts_them(clip_frames) -> None:
    agent, total, before, after = run_outage(clip_frames, max_buffer_s=0.5, outage_frames=40)
    seen = set(before + after)
    assert agent.stats.frames_dropped > 0
    assert total - len(seen) == agent.stats.frames_dropped
    # The newest frames survive: what is lost is the oldest part of the outage.
    assert max(seen) == total - 1


def vigil_camera(source: str, driver: str, bootstrap: str,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil", "camera", "--source", source, "--driver", driver,
         "--vehicle", "van-5", "--fps", "30", "--bootstrap", bootstrap],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def sessions_of(records, driver: str) -> set[str | None]:
    return {decode_frame_batch(r.value)[0].session for r in records
            if r.key == driver.encode()}


def test_a_file_that_ends_exits_zero(kafka_broker, video_dir: Path) -> None:
    proc = vigil_camera(str(video_dir / "single_face.mp4"), "cam-eof", kafka_broker.bootstrap)
    assert proc.returncode == 0, proc.stderr
    records = read_topic(kafka_broker.bootstrap, FRAMES.name)
    assert seqs_of(records, "cam-eof") == list(range(72))
    assert len(sessions_of(records, "cam-eof")) == 1


class MjpegCamera:
    """An IP camera on 127.0.0.1: MJPEG over HTTP. Each connection streams the next count of
    ``bursts`` frames and then drops; once they are spent it answers 503 (camera gone)."""

    def __init__(self, frames: list[np.ndarray], bursts: list[int]) -> None:
        jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in frames]
        left = list(bursts)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if not left:
                    self.send_error(503)
                    return
                count = left.pop(0)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for k in range(count):
                    jpeg = jpegs[k % len(jpegs)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_live_stream_that_drops_reconnects_then_gives_up_nonzero(kafka_broker,
                                                                    clip_frames) -> None:
    """The stream drops after 20 frames and comes back for 15 more (reconnected, same
    session, no gap), then stays away: after VIGIL_CAMERA__RECONNECT_FOR_S the camera exits
    non-zero with a clear error, having published every frame it got."""
    with MjpegCamera(clip_frames, [20, 15]) as camera:
        proc = vigil_camera(camera.url, "cam-drop", kafka_broker.bootstrap,
                            {"VIGIL_CAMERA__RECONNECT_FOR_S": "1"})
    assert proc.returncode == 2, proc.stderr
    assert "stopped delivering frames" in proc.stderr and "within 1 s" in proc.stderr
    assert "Traceback" not in proc.stderr
    records = read_topic(kafka_broker.bootstrap, FRAMES.name)
    assert seqs_of(records, "cam-drop") == list(range(35))
    assert len(sessions_of(records, "cam-drop")) == 1


def test_vigil_camera_serves_its_counters_and_health(kafka_broker, video_dir: Path,
                                                     tmp_path: Path) -> None:
    """`vigil camera`'s side port, as Prometheus and a probe read it while it streams."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from streams.processes import free_port, start_child, stop_child

    port = free_port()
    proc = start_child([sys.executable, "-m", "vigil", "camera", "--source",
                        str(video_dir / "single_face.mp4"), "--driver", "cam-metrics",
                        "--vehicle", "van-6", "--fps", "5", "--bootstrap",
                        kafka_broker.bootstrap], tmp_path / "camera.log",
                       {**os.environ, "VIGIL_METRICS__PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    try:
        samples: dict[str, float] = {}
        deadline = time.monotonic() + 90
        while samples.get("vigil_camera_frames_sent_total", 0) < 8:
            assert proc.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "camera.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(base + "/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:  # not listening yet
                time.sleep(0.2)
                continue
            families = list(text_string_to_metric_families(text))
            samples = {s.name: s.value for f in families for s in f.samples}
            info = [s.labels for f in families for s in f.samples if s.name == "vigil_camera_info"]
            time.sleep(0.2)
        assert info == [{"driver": "cam-metrics", "vehicle": "van-6"}]
        assert samples["vigil_camera_frames_captured_total"] >= 8
        assert samples["vigil_camera_send_failures_total"] == 0
        for path in ("/livez", "/readyz"):
            with urllib.request.urlopen(base + path, timeout=5) as response:
                assert response.status == 200 and b'"ok"' in response.read()
        assert proc.wait(timeout=60) == 0
    finally:
        stop_child(proc)
    logged = [line for line in (tmp_path / "camera.log").read_text().splitlines()
              if line.startswith("{")]  # not a terminal: JSON lines
    assert any(f"metrics and health on http://127.0.0.1:{port}" in line for line in logged)
