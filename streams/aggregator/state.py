"""What a closed window says about its driver, decided where the thresholds live (DESIGN §4).

Every window the aggregator emits carries its :class:`~streams.schemas.DriverState` and the
:class:`~streams.schemas.StateReason` codes behind it; the sink stores them with the window and
the dashboard shows them as stored, deciding nothing itself. The conditions, on the window's
own statistics:

- ``kss_warning`` / ``kss_info``: the window's KSS (the larger of the rule-based one and the
  learnt estimator's) is at least ``kss_warning`` / at least ``kss_info``;
- ``perclos``: PERCLOS at least ``perclos_drowsy``;
- ``no_face``: frames arrived and none showed a face;
- ``sensing_degraded``: the eye state was untrusted for at least ``degraded_window_share`` of
  the window's length, so its few measured seconds cannot say the driver is awake.

The state is the worst that applies: ``drowsy`` (a KSS reason or ``perclos``), else
``no_face``, else ``cannot_monitor``, else ``awake``. A window without frames (a gap the
aggregator reports) says nothing: ``awake``, no reasons.
"""

from __future__ import annotations

from streams.aggregator.config import AggregatorConfig
from streams.schemas import DriverState, StateReason, WindowMetrics

_DROWSY = (StateReason.KSS_WARNING, StateReason.KSS_INFO, StateReason.PERCLOS)


def window_state(
    metrics: WindowMetrics, config: AggregatorConfig | None = None
) -> tuple[DriverState, list[StateReason]]:
    """(the window's state, every condition found, in :class:`StateReason` order)."""
    cfg = config or AggregatorConfig()
    reasons: list[StateReason] = []
    kss = max((k for k in (metrics.kss, metrics.drowsiness_kss) if k is not None), default=None)
    if kss is not None and kss >= cfg.kss_warning:
        reasons.append(StateReason.KSS_WARNING)
    elif kss is not None and kss >= cfg.kss_info:
        reasons.append(StateReason.KSS_INFO)
    if metrics.perclos is not None and metrics.perclos >= cfg.perclos_drowsy:
        reasons.append(StateReason.PERCLOS)
    if metrics.frames > 0 and metrics.face_frames == 0:
        reasons.append(StateReason.NO_FACE)
    length = metrics.window_end - metrics.window_start
    if metrics.degraded_s >= cfg.degraded_window_share * length:
        reasons.append(StateReason.SENSING_DEGRADED)
    if any(r in _DROWSY for r in reasons):
        state = DriverState.DROWSY
    elif StateReason.NO_FACE in reasons:
        state = DriverState.NO_FACE
    elif StateReason.SENSING_DEGRADED in reasons:
        state = DriverState.CANNOT_MONITOR
    else:
        state = DriverState.AWAKE
    return state, reasons


def decide_window(metrics: WindowMetrics, config: AggregatorConfig | None = None) -> WindowMetrics:
    """``metrics`` with its :func:`window_state` filled in (what the aggregator emits)."""
    state, reasons = window_state(metrics, config)
    return metrics.model_copy(update={"state": state, "state_reasons": reasons})
