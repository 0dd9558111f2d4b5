"""Ground-truth behaviour timelines of a simulated driver (pure numpy, seeded).

A timeline holds, per output frame, what the renderer must show: eyelid closure of each eye,
yawn opening, head rotation, sway, lighting, blur, noise, occluders and face absences. The
truth JSON is derived from these arrays, so what is drawn and what is claimed cannot differ.

Physiology and the numbers behind it:

- Spontaneous blink rate of alert adults at rest ~15–20 /min (Bentivoglio et al., "Analysis
  of blink rate patterns in normal subjects", Mov. Disord. 12(6), 1997).
- Blink duration ~0.1–0.3 s when alert (≈0.2 s), growing with sleepiness, mainly through a
  slower reopening; the reopening phase lasts ~1.5–2.5× the closing phase; drowsy blinks are
  longer (0.25–0.5 s), some incomplete (Caffier, Erdmann & Ullsperger, "Experimental
  evaluation of eye-blink parameters as a drowsiness measure", Eur. J. Appl. Physiol. 89,
  2003; Schleicher et al., "Blinks and saccades as indicators of fatigue in sleepiness
  warnings: looking tired?", Ergonomics 51(7), 2008).
- PERCLOS, the share of time the eyes are ≥80 % closed, < 0.05 alert and ~0.1–0.3 drowsy
  (Wierwille et al., 1994; Dinges & Grace, "PERCLOS: a valid psychophysiological measure of
  alertness", FHWA-MCRT-98-006, 1998).
- Microsleeps (eyes closed ≥ 1 s and < 3 s) and sleep episodes (≥ 3 s) follow the Euro NCAP
  2023 driver-state-monitoring definitions used by Vigil's event rules; drowsy drivers nod
  (the head pitches down) during long closures and yawn every ~0.5–1.5 min.
- Distraction: glances away from the road of 1–5 s (Euro NCAP: one glance ≥ 3 s counts), by
  head yaw of ±25–40° (mirrors, centre console) or pitch down ~20–25° (lap, phone).

Nuisances (all seeded): Ornstein–Uhlenbeck head jitter (yaw/pitch ±5°, roll ±3°, sway ±10 px,
scale ±5 %), lighting gain 0.6–1.3 with a moving shadow edge, Gaussian blur σ ≤ 1, sensor
noise σ 2–5, partial occluders over the lower face (never the eyes) and, in most videos, one
face-absent stretch of 1–3 s (camera blocked, or the driver leaning out of the frame).

Conventions: frames are 0-based; time of frame k is k / fps. "left"/"right" are the image's
(closure index 0 = eye on the image's left; yaw > 0 turns the face towards the image's right,
pitch > 0 looks up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from streams.errors import ConfigurationError

log = logging.getLogger(__name__)

STATES: tuple[str, ...] = ("alert", "drowsy", "distracted")
PROFILES: tuple[str, ...] = ("alert", "drowsy", "distracted", "mixed")
OCCLUSION_REGIONS: tuple[str, ...] = ("mouth", "chin", "cheek")
ABSENCE_CAUSES: tuple[str, ...] = ("left_frame", "camera_blocked")

CALM_START_S = 2.0  # open-eyed and frontal: the engine calibrates on it
MIN_BLINK_GAP_S = 0.4  # eye events at least this far apart (closure back at 0 between)
CLOSED_LEVEL = 0.8  # PERCLOS / long-closure threshold on closure
LONG_CLOSURE_S = 1.0


@dataclass(frozen=True, slots=True)
class Interval:
    """Frames [start, end] inclusive, with a label (direction, region, cause, kind)."""

    start: int
    end: int
    label: str = ""


@dataclass
class Timeline:
    """Per-frame arrays, all of length n (the frame count).

    closure: (2, n) eyelid closure 0..1, image order. mouth: yawn opening 0..1.
    yaw, pitch, roll: head rotation in degrees. tx, ty: head sway in pixels; scale: head scale.
    exit: 0..1 how far the driver has leaned out of the frame (exit_side gives the side);
    blocked: 0..1 camera-blocked blend. occluder: 0..1 how far the occluder has slid in;
    occluder_region: index into OCCLUSION_REGIONS, -1 none.
    gain: global light gain; shadow_pos (-1..1 across the frame), shadow_angle (radians),
    shadow_depth (0..1) describe a moving shadow edge. blur: Gaussian σ; noise: sensor σ.
    state: index into STATES.
    absences, occlusions, distractions: nominal intervals (curve at least half way); the truth
    JSON takes absences from the rendered geometry instead (face box mostly out of frame).
    """

    fps: float
    n: int
    state: np.ndarray
    closure: np.ndarray
    mouth: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    scale: np.ndarray
    exit: np.ndarray
    blocked: np.ndarray
    occluder: np.ndarray
    occluder_region: np.ndarray
    gain: np.ndarray
    shadow_pos: np.ndarray
    shadow_angle: np.ndarray
    shadow_depth: np.ndarray
    blur: np.ndarray
    noise: np.ndarray
    exit_side: float = 1.0
    absences: list[Interval] = field(default_factory=list)
    occlusions: list[Interval] = field(default_factory=list)
    distractions: list[Interval] = field(default_factory=list)


def _ease(x: np.ndarray) -> np.ndarray:
    """Raised-cosine step 0 -> 1 on [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return (1.0 - np.cos(np.pi * x)) / 2.0


def _pulse(t: np.ndarray, t0: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 -> 1 over ``rise`` from t0, 1 for ``hold``, 1 -> 0 over ``fall`` (seconds)."""
    up = _ease((t - t0) / rise)
    down = _ease((t - (t0 + rise + hold)) / fall)
    return up * (1.0 - down)


def ou_process(rng: np.random.Generator, n: int, dt: float, sigma: float, tau: float
               ) -> np.ndarray:
    """Stationary Ornstein–Uhlenbeck samples (n,), std ``sigma``, time constant ``tau``."""
    a = np.exp(-dt / tau)
    noise = rng.standard_normal(n) * sigma * np.sqrt(1 - a * a)
    out = np.empty(n)
    out[0] = rng.standard_normal() * sigma
    for k in range(1, n):
        out[k] = a * out[k - 1] + noise[k]
    return out


class _Busy:
    """Time intervals (seconds) where nothing else may be scheduled."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def add(self, start: float, end: float) -> None:
        self.spans.append((start, end))

    def free(self, start: float, end: float) -> bool:
        return all(end <= s or start >= e for s, e in self.spans)

    def next_free(self, t: float) -> float:
        """The earliest time >= t not inside a span."""
        moved = True
        while moved:
            moved = False
            for s, e in self.spans:
                if s <= t < e:
                    t, moved = e, True
        return t


def _segments(rng: np.random.Generator, profile: str, duration: float
              ) -> list[tuple[float, float, int]]:
    """(start_s, end_s, state index) covering [0, duration]."""
    if profile != "mixed":
        return [(0.0, duration, STATES.index(profile))]
    order = [0, *rng.permutation([1, 2]).tolist()]
    # Short videos still show every state; longer ones switch every 15–25 s.
    short = duration < 45.0
    segments: list[tuple[float, float, int]] = []
    t = 0.0
    while t < duration:
        if len(segments) < 3:
            state = order[len(segments)]
        else:
            state = int(rng.choice([s for s in range(3) if s != segments[-1][2]]))
        length = duration / 3 * rng.uniform(0.9, 1.1) if short else rng.uniform(15.0, 25.0)
        end = min(duration, t + length)
        if duration - end < 5.0:  # no stub segment at the end
            end = duration
        segments.append((t, end, state))
        t = end
    return segments


@dataclass
class _EyeEvent:
    start: float
    closing: float
    hold: float
    reopening: float
    amplitude: float
    kind: str  # "blink" | "microsleep" | "sleep"
    asymmetry: float = 0.0

    @property
    def end(self) -> float:
        return self.start + self.closing + self.hold + self.reopening

    def curve(self, t: np.ndarray) -> np.ndarray:
        return self.amplitude * _pulse(t, self.start, self.closing, self.hold, self.reopening)


def _time_above(amplitude: float, ramp: float, level: float = CLOSED_LEVEL) -> float:
    """Seconds of a raised-cosine ramp of height ``amplitude`` spent at or above ``level``."""
    if amplitude <= level:
        return 0.0
    x = np.arccos(1 - 2 * level / amplitude) / np.pi
    return float(ramp * (1 - x))


def _blink(rng: np.random.Generator, start: float, drowsy: bool) -> _EyeEvent:
    if drowsy:
        duration = rng.uniform(0.25, 0.5)
        ratio = rng.uniform(2.0, 3.0)  # slower reopening when sleepy
        amplitude = rng.uniform(0.7, 0.9) if rng.random() < 0.25 else rng.uniform(0.85, 1.0)
        hold = rng.uniform(0.0, 0.06)
    else:
        duration = float(np.clip(rng.lognormal(np.log(0.2), 0.2), 0.15, 0.3))
        ratio = rng.uniform(1.5, 2.5)
        amplitude = rng.uniform(0.85, 1.0)
        hold = rng.uniform(0.0, 0.03)
    closing = (duration - hold) / (1 + ratio)
    return _EyeEvent(start, closing, hold, ratio * closing, amplitude, "blink",
                     rng.normal(0.0, 0.015))


def _long_closure(rng: np.random.Generator, start: float, kind: str) -> _EyeEvent:
    amplitude = rng.uniform(0.92, 1.0)
    closing, reopening = rng.uniform(0.15, 0.35), rng.uniform(0.3, 0.7)
    # Closed time (closure >= 0.8) kept clear of the 1 s and 3 s class boundaries.
    closed = rng.uniform(1.25, 2.75) if kind == "microsleep" else rng.uniform(3.3, 5.0)
    hold = closed - _time_above(amplitude, closing) - _time_above(amplitude, reopening)
    return _EyeEvent(start, closing, max(hold, 0.2), reopening, amplitude, kind,
                     rng.normal(0.0, 0.01))


@dataclass
class _Rates:
    blink_per_min: tuple[float, float]
    micro_per_min: float
    sleep_per_min: float


# Nominal blink rates sit slightly above the targets (alert 15–20, drowsy 20–30 /min): the
# calm start, absences, head turns and long closures take time from blinking.
_RATES = {
    0: _Rates((16.0, 21.0), 0.0, 0.0),
    1: _Rates((24.0, 34.0), 2.5, 0.25),
    2: _Rates((16.0, 21.0), 0.0, 0.0),
}


def make_timeline(profile: str, seconds: float, fps: float, rng: np.random.Generator
                  ) -> Timeline:
    """A driver's behaviour over ``seconds`` at ``fps`` for ``profile`` (see PROFILES)."""
    if profile not in PROFILES:
        raise ConfigurationError(
            f"unknown simulator profile {profile!r}; choose one of: {', '.join(PROFILES)}"
        )
    n = round(seconds * fps)
    if n < 1:
        raise ConfigurationError(f"simulation too short: {seconds} s at {fps} fps")
    dt = 1.0 / fps
    t = np.arange(n) * dt
    duration = n * dt
    segments = _segments(rng, profile, duration)
    state = np.zeros(n, dtype=np.int8)
    for s0, s1, st in segments:
        state[(t >= s0) & (t < s1)] = st

    busy_eyes = _Busy()  # where eye events may not go (absences, glances)
    busy_face = _Busy()  # where occluders may not go (absences, yawns)
    tl_absences: list[tuple[float, float, float, str]] = []

    # --- a face-absent stretch in most videos -------------------------------------------
    exit_curve = np.zeros(n)
    blocked = np.zeros(n)
    exit_side = float(rng.choice([-1.0, 1.0]))
    if duration >= 10.0 and rng.random() < 0.8:
        length = rng.uniform(1.0, 3.0)
        start = rng.uniform(CALM_START_S + 2.0, duration - length - 2.5)
        cause = str(rng.choice(ABSENCE_CAUSES))
        # A palm on the lens blocks it from one frame to the next (start on a frame, so no
        # half-dark frame); leaning out takes a moment.
        ramp = rng.uniform(0.2, 0.35) if cause == "left_frame" else dt
        if cause == "camera_blocked":
            start, length = round(start / dt) * dt, round(length / dt) * dt
        # The ramps are outside the nominal length: the face is gone for ``length``.
        curve = _pulse(t, start - ramp, ramp, length, ramp)
        if cause == "left_frame":
            exit_curve = np.maximum(exit_curve, curve)
        else:
            blocked = np.maximum(blocked, curve)
        tl_absences.append((start - ramp, start + length + ramp, ramp, cause))
        busy_eyes.add(start - ramp - 0.6, start + length + ramp + 0.6)
        busy_face.add(start - ramp - 0.5, start + length + ramp + 0.5)

    # --- glances away (distracted) -----------------------------------------------------
    glance_yaw, glance_pitch = np.zeros(n), np.zeros(n)
    distractions: list[Interval] = []
    quiet: list[tuple[float, float]] = []  # glances and yawns: no long closures there
    for s0, s1, st in segments:
        if STATES[st] != "distracted":
            continue
        g = max(s0, CALM_START_S + 1.0) + rng.uniform(1.0, 4.0)
        while True:
            length = rng.uniform(1.0, 5.0)
            ramp_in, ramp_out = rng.uniform(0.25, 0.45), rng.uniform(0.3, 0.5)
            end = g + ramp_in + length + ramp_out
            if end > min(s1, duration - 1.0):
                break
            if not busy_eyes.free(g - 0.5, end + 0.5):
                g = busy_eyes.next_free(g) + 1.0
                continue
            direction = str(rng.choice(["left", "right", "down"], p=[0.4, 0.4, 0.2]))
            curve = _pulse(t, g, ramp_in, length, ramp_out)
            # Slow drift while looking away (reading a mirror, a screen).
            curve *= 1.0 + 0.05 * np.sin(2 * np.pi * (t - g) / rng.uniform(1.5, 3.0))
            if direction == "down":
                glance_pitch -= rng.uniform(20.0, 25.0) * curve
            else:
                sign = 1.0 if direction == "right" else -1.0
                glance_yaw += sign * rng.uniform(25.0, 40.0) * curve
            frames = np.flatnonzero(curve >= 0.5)
            distractions.append(Interval(int(frames[0]), int(frames[-1]), direction))
            # No blinks while the head is turning: lid motion and head motion would blur into
            # each other. Blinking while the head is held away is normal.
            busy_eyes.add(g - 0.2, g + ramp_in + 0.2)
            busy_eyes.add(end - ramp_out - 0.2, end + 0.2)
            quiet.append((g, end))
            g = end + rng.uniform(3.0, 12.0)

    # --- yawns (drowsy) ----------------------------------------------------------------
    mouth = np.zeros(n)
    for s0, s1, st in segments:
        if STATES[st] != "drowsy":
            continue
        y = max(s0, CALM_START_S + 1.0) + rng.uniform(2.0, 15.0)
        while True:
            rise, hold, fall = rng.uniform(1.3, 2.2), rng.uniform(1.0, 3.0), rng.uniform(1.0, 1.8)
            end = y + rise + hold + fall
            if end > min(s1, duration - 1.0):
                break
            if not busy_face.free(y - 0.5, end + 0.5):
                y = busy_face.next_free(y) + 0.5
                continue
            peak = rng.uniform(0.75, 1.0)
            mouth = np.maximum(mouth, peak * _pulse(t, y, rise, hold, fall))
            quiet.append((y, end))
            busy_face.add(y - 0.5, end + 0.5)
            y = end + rng.uniform(30.0, 90.0)

    # --- partial occluders over the lower face -----------------------------------------
    occluder = np.zeros(n)
    occluder_region = np.full(n, -1, dtype=np.int8)
    occlusions: list[Interval] = []
    o = CALM_START_S + 1.0 + rng.uniform(2.0, 25.0)
    while True:
        length = rng.uniform(1.0, 3.0)
        slide = rng.uniform(0.25, 0.4)
        end = o + 2 * slide + length
        if end > duration - 1.0:
            break
        if not busy_face.free(o - 0.3, end + 0.3):
            o = busy_face.next_free(o) + 0.3
            continue
        region = int(rng.integers(len(OCCLUSION_REGIONS)))
        curve = _pulse(t, o, slide, length, slide)
        live = curve > 0
        occluder[live] = curve[live]
        occluder_region[live] = region
        frames = np.flatnonzero(curve >= 0.5)
        occlusions.append(Interval(int(frames[0]), int(frames[-1]), OCCLUSION_REGIONS[region]))
        busy_face.add(o - 0.3, end + 0.3)
        o = end + rng.uniform(15.0, 60.0)

    # --- eyelid events -----------------------------------------------------------------
    closure = np.zeros((2, n))
    nod = np.zeros(n)
    events = _eye_events(rng, segments, duration, busy_eyes, quiet)
    for ev in events:
        c = ev.curve(t)
        closure[0] = np.maximum(closure[0], c * (1 - max(ev.asymmetry, 0)))
        closure[1] = np.maximum(closure[1], c * (1 + min(ev.asymmetry, 0)))
        if ev.kind != "blink":
            # Head nod: pitch sinks while the eyes stay shut, snaps back on waking.
            depth = rng.uniform(6.0, 12.0) if ev.kind == "microsleep" else rng.uniform(12.0, 20.0)
            sink_start = ev.start + ev.closing
            sink = np.clip((t - sink_start) / max(ev.hold, 1e-3), 0, 1) ** 1.5
            recover = 1 - _ease((t - (sink_start + ev.hold)) / (ev.reopening + 0.2))
            nod -= depth * sink * recover * (t >= sink_start)
    closure = np.clip(closure, 0.0, 1.0)

    # --- continuous head jitter and sway -----------------------------------------------
    calm = np.clip(0.2 + 0.8 * (t - CALM_START_S), 0.2, 1.0)  # small until 2 s, full by 3 s
    yaw = np.clip(ou_process(rng, n, dt, 2.0, 1.5), -5, 5) * calm + glance_yaw
    pitch = np.clip(ou_process(rng, n, dt, 2.0, 1.5), -5, 5) * calm + glance_pitch + nod
    roll = np.clip(ou_process(rng, n, dt, 1.2, 2.0), -3, 3) * calm
    tx = np.clip(ou_process(rng, n, dt, 4.0, 2.0), -10, 10) * calm
    ty = np.clip(ou_process(rng, n, dt, 4.0, 2.0), -10, 10) * calm
    scale = 1.0 + np.clip(ou_process(rng, n, dt, 0.02, 3.0), -0.05, 0.05) * calm

    # --- lighting, blur, noise ---------------------------------------------------------
    base_gain = rng.uniform(0.8, 1.1)
    gain = np.clip(base_gain * np.exp(ou_process(rng, n, dt, 0.12, 6.0) * calm), 0.6, 1.3)
    period = rng.uniform(10.0, 30.0)
    shadow_pos = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) * 1.2
    shadow_angle = rng.uniform(0, 2 * np.pi) + ou_process(rng, n, dt, 0.3, 8.0)
    shadow_depth = np.full(n, rng.uniform(0.1, 0.4)) * calm
    blur = np.clip(rng.uniform(0.0, 0.6) + ou_process(rng, n, dt, 0.15, 4.0), 0.0, 1.0)
    # Sensor noise grows as the light falls (gain up in the camera).
    noise = np.clip(np.full(n, rng.uniform(2.0, 4.5)) / np.sqrt(gain), 2.0, 5.0)

    absences = []
    for a0, a1, _ramp, cause in tl_absences:
        curve = exit_curve if cause == "left_frame" else blocked
        frames = np.flatnonzero(((t >= a0) & (t <= a1)) & (curve >= 0.5))
        if len(frames):
            absences.append(Interval(int(frames[0]), int(frames[-1]), cause))

    return Timeline(
        fps=fps, n=n, state=state, closure=closure, mouth=mouth, yaw=yaw, pitch=pitch,
        roll=roll, tx=tx, ty=ty, scale=scale, exit=exit_curve, blocked=blocked,
        occluder=occluder, occluder_region=occluder_region, gain=gain, shadow_pos=shadow_pos,
        shadow_angle=shadow_angle, shadow_depth=shadow_depth, blur=blur, noise=noise,
        exit_side=exit_side, absences=absences, occlusions=occlusions,
        distractions=distractions,
    )


def _eye_events(rng: np.random.Generator, segments: list[tuple[float, float, int]],
                duration: float, busy: _Busy, quiet: list[tuple[float, float]]
                ) -> list[_EyeEvent]:
    """Blinks and long closures, at least MIN_BLINK_GAP_S apart, outside ``busy``; long
    closures also outside ``quiet`` (glances, and yawns: a yawning face changes how closed
    lids read, which would blur the closure truth)."""
    events: list[_EyeEvent] = []
    last_end = CALM_START_S - MIN_BLINK_GAP_S
    tail = duration - 0.6  # every event ends inside the video, eyes open again

    def place(ev: _EyeEvent) -> bool:
        if ev.end > tail or not busy.free(ev.start - 0.15, ev.end + 0.15):
            return False
        if ev.kind != "blink" and any(ev.start < q1 + 0.3 and ev.end > q0 - 0.3
                                      for q0, q1 in quiet):
            return False
        events.append(ev)
        busy.add(ev.start - MIN_BLINK_GAP_S, ev.end + MIN_BLINK_GAP_S)
        return True

    # Guaranteed long closures first: every drowsy stretch of 12 s shows a microsleep (one
    # per 30 s), and a drowsy stretch of 45 s a sleep episode.
    for s0, s1, st in segments:
        if STATES[st] != "drowsy":
            continue
        lo = max(s0, CALM_START_S + 1.0)
        kinds = ["sleep"] if s1 - lo >= 45.0 else []
        kinds += ["microsleep"] * max(1, int((s1 - lo) // 30.0)) if s1 - lo >= 12.0 else []
        for kind in kinds:
            for _ in range(20):
                ev = _long_closure(rng, rng.uniform(lo, max(lo, s1 - 6.0)), kind)
                if place(ev):
                    break

    per_driver = {st: rng.uniform(*r.blink_per_min) for st, r in _RATES.items()}
    t = CALM_START_S
    while t < tail:
        st = next((s for a, b, s in segments if a <= t < b), segments[-1][2])
        rates = _RATES[st]
        rate = per_driver[st] + rates.micro_per_min + rates.sleep_per_min
        # Gap from the previous event's end: gamma (spontaneous blinking is regular-ish) with
        # mean 60/rate less a typical blink, so that ``rate`` events start per minute.
        mean_gap = max(60.0 / rate - (0.35 if STATES[st] == "drowsy" else 0.2), 0.5)
        gap = rng.gamma(3.0, mean_gap / 3.0)
        t = max(last_end + max(gap, MIN_BLINK_GAP_S), t)
        t = busy.next_free(t)
        if t >= tail:
            break
        u = rng.random() * rate
        if u < rates.sleep_per_min:
            ev = _long_closure(rng, t, "sleep")
        elif u < rates.sleep_per_min + rates.micro_per_min:
            ev = _long_closure(rng, t, "microsleep")
        else:
            ev = _blink(rng, t, drowsy=STATES[st] == "drowsy")
        if place(ev):
            last_end = t = ev.end
        else:
            t += 0.2
    events.sort(key=lambda e: e.start)
    return events
