"""The streaming blink detector on closure series with known events."""

from __future__ import annotations

import numpy as np

from workers.signals import BlinkConfig, BlinkDetector

FPS = 30.0


def blink_curve(close_frames: int, closed_frames: int, open_frames: int, peak: float = 1.0):
    """Closure values of one eyelid event: linear close, plateau, slower reopening."""
    rise = np.linspace(0, peak, close_frames + 1)[1:]
    fall = np.linspace(peak, 0, open_frames + 1)[1:]
    return [*rise, *([peak] * closed_frames), *fall]


def run(series, gaps=()):
    detector = BlinkDetector()
    events = []
    for i, c in enumerate(series):
        events += detector.update(i, i / FPS, None if i in gaps else c)
    events += detector.flush()
    return detector, events


def test_blinks_long_closures_and_their_features() -> None:
    series = [0.05] * 30
    series += blink_curve(3, 1, 5)  # ~0.3 s blink
    series += [0.05] * 30
    series += blink_curve(4, 45, 8)  # 1.5 s closed: microsleep
    series += [0.05] * 30
    series += blink_curve(4, 120, 8)  # 4 s closed: sleep
    series += [0.05] * 30
    series += blink_curve(3, 0, 4, peak=0.7)  # incomplete blink
    series += [0.05] * 30
    detector, events = run(series)
    assert [e.kind for e in events] == ["blink", "microsleep", "sleep", "blink"]
    blink, micro, sleep, partial = events
    assert 0.2 <= blink.duration_s <= 0.4
    assert blink.amplitude > 0.8 and blink.opening_velocity > 1.0
    assert abs(micro.closed_duration_s - 47 / FPS) < 1.5 / FPS
    assert abs(sleep.closed_duration_s - 122 / FPS) < 1.5 / FPS
    assert partial.closed_duration_s == 0.0 and 0.5 < partial.peak_closure < 0.8
    # Frames with closure >= 0.8 over all frames of the series.
    truth = np.mean(np.array(series) >= 0.8)
    assert abs(detector.perclos - truth) < 1e-9  # type: ignore[operator]


def test_streaming_emits_events_when_they_finish_and_reports_closed_time() -> None:
    detector = BlinkDetector()
    series = [0.0] * 10 + [1.0] * 100 + [0.0] * 5
    closed_at = {}
    for i, c in enumerate(series):
        events = detector.update(i, i / FPS, c)
        closed_at[i] = detector.closed_for(i / FPS)
        if i < 110:
            assert events == []
        elif i == 110:
            assert [e.kind for e in events] == ["sleep"]
    # While the eyes are still shut, a caller can already see the sleep duration.
    assert abs(closed_at[109] - 100 / FPS) < 1e-6
    assert closed_at[112] == 0.0


def test_long_measurement_gap_abandons_the_event() -> None:
    series = [0.0] * 10 + [1.0] * 60 + [0.0] * 10
    _, events = run(series, gaps=set(range(20, 50)))  # 1 s without measurement
    assert all(e.kind != "microsleep" for e in events)
    assert not any(e.start_frame < 20 < e.end_frame for e in events)


def test_short_gap_is_bridged() -> None:
    series = [0.0] * 10 + blink_curve(3, 2, 5) + [0.0] * 10
    _, events = run(series, gaps={14})
    assert [e.kind for e in events] == ["blink"]


def test_blink_rate_counts_blinks_per_minute() -> None:
    detector = BlinkDetector(BlinkConfig(rate_window_s=60.0))
    t = 0.0
    frame = 0
    for _ in range(20):  # one blink every 3 s for 60 s
        for c in [0.0] * 80 + blink_curve(3, 1, 5) + [0.0]:
            detector.update(frame, t, c)
            frame += 1
            t += 1 / FPS
    assert 18 <= detector.blink_rate(t) <= 21


def test_two_close_blinks_stay_two_blinks_when_the_lids_do_not_reach_rest() -> None:
    # Two full closures 0.45 s apart whose reopening only gets down to 0.35 closure: one
    # merged 1.7 s "microsleep" would be a false safety alert on an alert person.
    series = [0.05] * 20
    series += blink_curve(3, 8, 4, peak=1.0)[:-2] + [0.35] * 2
    series += blink_curve(3, 8, 5, peak=1.0)
    series += [0.05] * 20
    _, events = run(series)
    assert [e.kind for e in events] == ["blink", "blink"]
    first, second = events
    assert first.end_frame <= second.start_frame
    assert first.closed_duration_s < 0.5 and second.closed_duration_s < 0.5


def test_a_long_closure_with_a_flutter_stays_one_closure() -> None:
    # The lids lift a little (to 0.6) in the middle of a 2 s closure: still one microsleep.
    series = [0.05] * 20 + blink_curve(3, 30, 0)[:-1] + [0.6] * 2 + [1.0] * 30
    series += blink_curve(0, 0, 6)[1:] + [0.05] * 20
    _, events = run(series)
    assert [e.kind for e in events] == ["microsleep"]


def test_eyes_closed_from_the_first_frame_count_as_closed_at_once() -> None:
    detector = BlinkDetector()
    for i in range(100):
        detector.update(i, i / FPS, 0.95)
    assert detector.closed_for(99 / FPS) >= 3.0
    (event,) = detector.flush()
    assert event.kind == "sleep" and event.start_frame == 0
