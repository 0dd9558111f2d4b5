"""Altair charts of the dashboard: pure functions from the query frames to charts."""

from __future__ import annotations

import altair as alt
import pandas as pd

SEVERITY_SCALE = alt.Scale(
    domain=["critical", "warning", "info"], range=["#d32f2f", "#ef6c00", "#1976d2"]
)
HEIGHT = 200
# Charts with a row per category size themselves by rows: a fixed height that leaves no room
# for the plot after title, legend and axis makes Streamlit draw nothing at all.
ROW = alt.Step(32)


def _x(domain: tuple[pd.Timestamp, pd.Timestamp] | None) -> alt.X:
    scale = alt.Scale(domain=[t.isoformat() for t in domain]) if domain else alt.Undefined
    return alt.X("time:T", title=None, scale=scale, axis=alt.Axis(tickCount=8))


def _alert_rules(
    alerts: pd.DataFrame, domain: tuple[pd.Timestamp, pd.Timestamp] | None
) -> alt.Chart:
    data = alerts.rename(columns={"detected": "time"})[["time", "reason", "severity", "message"]]
    return (
        alt.Chart(data)
        .mark_rule(strokeDash=[4, 3], opacity=0.8)
        .encode(
            x=_x(domain),
            color=alt.Color("severity:N", scale=SEVERITY_SCALE, legend=None),
            tooltip=[alt.Tooltip("time:T", format="%H:%M:%S"), "reason:N", "message:N"],
        )
    )


def metric_chart(
    series: pd.DataFrame,
    columns: dict[str, str],
    title: str,
    alerts: pd.DataFrame | None = None,
    domain: tuple[pd.Timestamp, pd.Timestamp] | None = None,
    threshold: float | None = None,
    y_format: str | None = None,
) -> alt.LayerChart:
    """Lines of ``columns`` (column -> legend label) over the window start, the alerts as
    dashed vertical rules coloured by severity, and an optional dotted threshold."""
    long = series.melt(id_vars=["time"], value_vars=list(columns), var_name="signal")
    long["signal"] = long["signal"].map(columns)
    long = long.dropna(subset=["value"])
    axis = alt.Axis(format=y_format) if y_format else alt.Axis()
    lines = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=_x(domain),
            y=alt.Y("value:Q", title=None, axis=axis),
            color=alt.Color(
                "signal:N",
                legend=alt.Legend(orient="top", title=None) if len(columns) > 1 else None,
            ),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S"),
                "signal:N",
                alt.Tooltip("value:Q", format=".3f"),
            ],
        )
    )
    layers: list[alt.Chart] = [lines]
    if threshold is not None:
        layers.append(
            alt.Chart(pd.DataFrame({"value": [threshold]}))
            .mark_rule(strokeDash=[6, 4], color="#757575", strokeWidth=1.5)
            .encode(y="value:Q")
        )
    if alerts is not None and not alerts.empty:
        layers.append(_alert_rules(alerts, domain))
    # Independent colours: the signals' palette and the severities' must not share a scale.
    chart = alt.LayerChart(layer=layers).resolve_scale(color="independent")
    return chart.properties(title=title, height=HEIGHT)


def alert_timeline(
    alerts: pd.DataFrame, domain: tuple[pd.Timestamp, pd.Timestamp] | None = None
) -> alt.Chart:
    """Each alert a point at its detection time, one row per reason, coloured by severity."""
    data = alerts.rename(columns={"detected": "time"})[
        ["time", "reason", "severity", "state", "message"]
    ]
    return (
        alt.Chart(data)
        .mark_point(filled=True, size=120, shape="diamond")
        .encode(
            x=_x(domain),
            y=alt.Y("reason:N", title=None),
            color=alt.Color(
                "severity:N", scale=SEVERITY_SCALE, legend=alt.Legend(orient="top", title=None)
            ),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S"),
                "reason:N",
                "severity:N",
                "state:N",
                "message:N",
            ],
        )
        .properties(title="Alert events", height=ROW)
    )


def fps_chart(windows: pd.DataFrame) -> alt.Chart:
    """Frames per second of each driver's windows over time."""
    return (
        alt.Chart(windows)
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title=None),
            y=alt.Y("fps:Q", title="frames/s"),
            color=alt.Color("name:N", title="driver"),
            tooltip=[
                alt.Tooltip("time:T", format="%H:%M:%S"),
                "name:N",
                alt.Tooltip("fps:Q", format=".1f"),
                "frames:Q",
            ],
        )
        .properties(title="Frames per second by driver", height=HEIGHT)
    )


def dead_letter_bars(counts: pd.DataFrame) -> alt.Chart:
    """Dead letters per reason."""
    return (
        alt.Chart(counts)
        .mark_bar()
        .encode(
            x=alt.X("count:Q", title="dead letters", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("reason:N", title=None, sort="-x"),
            color=alt.value("#7b1fa2"),
            tooltip=["reason:N", "count:Q"],
        )
        .properties(title="Dead letters per reason", height=ROW)
    )
