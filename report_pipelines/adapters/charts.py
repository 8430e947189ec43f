"""Report charts as PNG, rendered server-side with matplotlib's Agg backend (no display, no browser).

Each chart is a :class:`~report_pipelines.domain.report_digest.TrafficSeries` drawn on its own
``Figure`` (never pyplot's global state, so renders in threads or workers do not interfere), at a
fixed size: :data:`CHART_SIZE_PX` pixels (5 x 3 inches at 180 dpi), which an e-mail shows at 100 %
of a phone's width (``max-width: 600px``) and still reads on a 2x screen.

* **Volume:** bars per local hour (a one-day period: every bucket of the day, 23 or 25 on DST days,
  labelled in local time, the repeated hour with its zone abbreviation) or per local day, stacked
  answered + abandoned + missed, so a bar's height is the calls offered.
* **Service level:** the service level per point against its target (a dashed line); a point with
  nothing offered is a gap, not a zero.

Colours are the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), and
never the only cue: the legend names each series, the target line is dashed, abandons sit on top of
answered calls.
"""

from __future__ import annotations

import io
import math

from report_pipelines.domain.report_digest import TrafficSeries

#: Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky_blue": "#56B4E9", "bluish_green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish_purple": "#CC79A7",
}
ANSWERED, ABANDONED, MISSED, SERVICE_LEVEL = OKABE_ITO["blue"], OKABE_ITO["vermillion"], OKABE_ITO["orange"], OKABE_ITO["bluish_green"]
FIGURE_INCHES = (5.0, 3.0)
DPI = 180
CHART_SIZE_PX = (round(FIGURE_INCHES[0] * DPI), round(FIGURE_INCHES[1] * DPI))  # (900, 540)
_SMALL, _TITLE = 9, 11  # points: at a phone's width (about 360 px for 900) still readable
MAX_TICK_LABELS = 9


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported here: only charts need matplotlib
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_INCHES, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return buffer.getvalue()


def _ticks(series: TrafficSeries) -> list[int]:
    """Which points get a label: every n-th (at most :data:`MAX_TICK_LABELS`) plus the marked ones
    (around a DST change), dropping plain neighbours of a marked point so labels do not collide."""
    n = len(series.labels)
    step = max(1, math.ceil(n / MAX_TICK_LABELS))
    marked = {i for i, m in enumerate(series.marked) if m}
    plain = {i for i in range(0, n, step) if all(abs(i - m) > 1 for m in marked)}
    return sorted(plain | marked)


def _axes(figure, series: TrafficSeries, title: str):
    axes = figure.add_subplot()
    axes.set_title(title + (f"\n{series.note}" if series.note else ""), fontsize=_TITLE, loc="left")
    ticks = _ticks(series)
    # hours stand upright, so the two labels of a repeated hour ("01:00 EDT", "01:00 EST") fit side by side
    rotation = 90 if series.unit == "hour" else 40 if len(series.labels) > 7 else 0
    axes.set_xticks(ticks, [series.labels[i] for i in ticks], fontsize=_SMALL, rotation=rotation,
                    ha="center" if rotation in (0, 90) else "right", rotation_mode="anchor" if rotation == 40 else "default")
    axes.set_xlabel(series.axis_label, fontsize=_SMALL)
    axes.tick_params(axis="y", labelsize=_SMALL)
    axes.spines[["top", "right"]].set_visible(False)
    axes.set_xlim(-0.6, len(series.labels) - 0.4)
    return axes


def volume_chart(series: TrafficSeries) -> bytes:
    """Calls offered per point as stacked bars: answered, abandoned, missed (PNG bytes)."""
    figure = _figure()
    per = "local hour" if series.unit == "hour" else "local day"
    axes = _axes(figure, series, f"Calls offered per {per}")
    x = range(len(series.labels))
    answered_top = [a + b for a, b in zip(series.answered, series.abandoned, strict=True)]
    axes.bar(x, series.answered, color=ANSWERED, label="answered", width=0.8)
    axes.bar(x, series.abandoned, bottom=series.answered, color=ABANDONED, label="abandoned", width=0.8)
    axes.bar(x, series.missed, bottom=answered_top, color=MISSED, label="missed", width=0.8)
    axes.set_ylabel("calls", fontsize=_SMALL)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.legend(fontsize=_SMALL, frameon=False, ncols=3, loc="upper left")
    axes.set_ylim(0, max([*series.offered, 1]) * 1.25)  # room for the legend above the bars
    return _png(figure)


def service_level_chart(series: TrafficSeries) -> bytes:
    """Service level per point against its target line (PNG bytes)."""
    from matplotlib.ticker import PercentFormatter

    figure = _figure()
    within = f"answered within {series.service_level_seconds} s" if series.service_level_seconds is not None \
        else "thresholds differ in the period"
    axes = _axes(figure, series, f"Service level ({within})")
    x = list(range(len(series.labels)))
    values = [v * 100 for v in series.service_level]
    axes.plot(x, values, color=SERVICE_LEVEL, marker="o", markersize=3.5, linewidth=1.8, label="service level")
    axes.axhline(series.target * 100, color=OKABE_ITO["black"], linestyle="--", linewidth=1.2,
                 label=f"target {series.target * 100:g} %")
    axes.set_ylim(0, 105)
    axes.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    axes.legend(fontsize=_SMALL, frameon=False, ncols=2, loc="lower left")
    return _png(figure)


__all__ = ["CHART_SIZE_PX", "OKABE_ITO", "service_level_chart", "volume_chart"]
