"""A campaign's report: how many recipients were sent, delivered, opened, clicked, bounced,
unsubscribed or complained, the rates over what was sent, and the same story over time.

The counts come from campaign_recipients (one row per person, each timestamp set once), so a
recipient who opened five times counts once. The series over time comes from campaign_events:
'sent' events, and only the first open and the first click of each recipient, so the points of
the chart add up to the counts beside it. Buckets are hours in the workspace's time zone, days
once the events span more than two days, weeks beyond four months (a chart of thousands of
points says nothing on a phone).

`report_chart_svg` draws the series as a small inline SVG (no script, no library): it scales to
its container's width, carries a <title> and a <desc> summing it up for screen readers, and
takes its words from the caller so a page can pass them in the workspace's language.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from kith.platform.access.session import TenantSession
from kith.tenants.campaigns.access import CAMPAIGNS
from kith.tenants.records.refusals import RecordsRefusal

COUNTED: Final = ("recipients", "pending", "sent", "delivered", "opened", "clicked", "bounced", "unsubscribed",
                  "complained", "failed", "suppressed")
# rates over the emails sent
RATED: Final = ("delivered", "opened", "clicked", "bounced", "unsubscribed", "complained")
SERIES_KINDS: Final = ("sent", "opened", "clicked")
HOURLY_UP_TO: Final = timedelta(hours=48)
DAILY_UP_TO: Final = timedelta(days=120)
_STEP: Final = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def campaign_report(session: TenantSession, campaign_id: int) -> dict[str, Any]:
    """The report of one campaign (needs 'campaigns: view'); a missing one is the 404
    RecordsRefusal campaigns.py raises too.

    Returns {"campaign": {id, name, status, started_at, finished_at}, "counts": {recipients,
    pending, sent, delivered, opened, clicked, bounced, unsubscribed, complained, failed,
    suppressed}, "rates": {delivered, opened, clicked, bounced, unsubscribed, complained: share
    of sent, 0..1 rounded to 4 places, None while nothing was sent}, "series": {"bucket": "hour" |
    "day" | "week", "time_zone": the workspace's, "points": [{"at": bucket start (aware, UTC),
    "sent", "opened", "clicked"}]}} with empty buckets filled in, so the chart's time axis is even.
    """
    session.require(CAMPAIGNS.name, "view")
    found = await session.tx.execute_query_dict(
        "SELECT c.id, c.name, c.status, c.started_at, c.finished_at, t.time_zone"
        " FROM campaigns c JOIN public.tenants t ON t.id = $2 WHERE c.id = $1",
        [int(campaign_id), session.actor.tenant_id])
    if not found:
        raise RecordsRefusal(404, "not_found", "There is no such campaign.")
    campaign = found[0]
    rows = await session.tx.execute_query_dict(
        "SELECT count(*) AS recipients,"
        " count(*) FILTER (WHERE status = 'pending') AS pending,"
        " count(sent_at) AS sent, count(delivered_at) AS delivered, count(opened_at) AS opened,"
        " count(clicked_at) AS clicked, count(bounced_at) AS bounced, count(unsubscribed_at) AS unsubscribed,"
        " count(complained_at) AS complained,"
        " count(*) FILTER (WHERE status = 'failed') AS failed,"
        " count(*) FILTER (WHERE status = 'suppressed') AS suppressed"
        " FROM campaign_recipients WHERE campaign_id = $1", [int(campaign_id)])
    counts = {name: int(rows[0][name]) for name in COUNTED}
    rates = {name: _rate(counts[name], counts["sent"]) for name in RATED}
    time_zone = str(campaign["time_zone"] or "UTC")
    if _zone(time_zone).key != time_zone:
        time_zone = "UTC"
    return {
        "campaign": {k: campaign[k] for k in ("id", "name", "status", "started_at", "finished_at")},
        "counts": counts,
        "rates": rates,
        "series": await _series(session, int(campaign_id), time_zone),
    }


async def _series(session: TenantSession, campaign_id: int, time_zone: str) -> dict[str, Any]:
    # first opens and first clicks only ('first' is false on a repeat click)
    counted = ("(kind = 'sent' OR (kind IN ('opened', 'clicked')"
               " AND coalesce(detail->>'first', 'true') <> 'false'))")
    span = await session.tx.execute_query_dict(
        f"SELECT min(at) AS first, max(at) AS last FROM campaign_events WHERE campaign_id = $1 AND {counted}",  # noqa: S608
        [campaign_id])
    first, last = span[0]["first"], span[0]["last"]
    if first is None:
        return {"bucket": "hour", "time_zone": time_zone, "points": []}
    bucket = "hour" if last - first <= HOURLY_UP_TO else "day" if last - first <= DAILY_UP_TO else "week"
    rows = await session.tx.execute_query_dict(
        "SELECT date_trunc($2, at AT TIME ZONE $3) AS local,"
        " count(*) FILTER (WHERE kind = 'sent') AS sent,"
        " count(*) FILTER (WHERE kind = 'opened') AS opened,"
        " count(*) FILTER (WHERE kind = 'clicked') AS clicked"
        f" FROM campaign_events WHERE campaign_id = $1 AND {counted} GROUP BY 1 ORDER BY 1",  # noqa: S608
        [campaign_id, bucket, time_zone])
    by_local = {row["local"]: row for row in rows}
    zone = _zone(time_zone)
    points: list[dict[str, Any]] = []
    local = rows[0]["local"]
    end = rows[-1]["local"]
    while local <= end:
        row = by_local.get(local)
        points.append({"at": local.replace(tzinfo=zone).astimezone(UTC),
                       **{kind: int(row[kind]) if row else 0 for kind in SERIES_KINDS}})
        local = _next_bucket(local, bucket)
    return {"bucket": bucket, "time_zone": time_zone, "points": points}


def _next_bucket(local: datetime, bucket: str) -> datetime:
    """The next bucket's start in local wall time (a day is a calendar day, whatever DST does)."""
    return local + _STEP[bucket]


# --- the chart -----------------------------------------------------------------------------

# a narrow drawing, so its 14px text stays readable once scaled down to a phone's width
WIDTH: Final = 480
HEIGHT: Final = 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 36, 30
COLOURS: Final = {"sent": "#2456d6", "opened": "#1f7a45", "clicked": "#b35c00"}
DEFAULT_LABELS: Final = {"sent": "Sent", "opened": "Opened", "clicked": "Clicked",
                         "title": "Sent, opened and clicked over time", "empty": "Nothing sent yet."}
_FORMATS: Final = {"hour": "%m-%d %H:%M", "day": "%Y-%m-%d", "week": "%Y-%m-%d"}


def _text_width(text: str) -> int:
    """About how wide `text` is at 14px: CJK characters are twice as wide as Latin ones."""
    return round(sum(14 if ord(ch) >= 0x2E80 else 8 for ch in text))


def _compact(value: int) -> str:
    """An axis value that fits the margin: 500, 5k, 250k, 2M."""
    if value < 1000:
        return str(value)
    if value < 1_000_000:
        return f"{value / 1000:g}k"
    return f"{value / 1_000_000:g}M"


def _nice_max(value: int) -> int:
    """The top of the y axis: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 1:
        return 1
    magnitude = 1
    while True:
        for step in (1, 2, 5):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def report_chart_svg(series: Mapping[str, Any], *, labels: Mapping[str, str] | None = None,
                     chart_id: str = "campaign-chart") -> str:
    """The series of `campaign_report` as an inline SVG line chart (markup safe to embed as is).

    `labels` overrides the words ("sent", "opened", "clicked", "title", "empty"), so a page can
    pass them translated; `chart_id` keeps the title/desc ids unique when a page has two charts.
    The SVG has a viewBox and width 100%, so it shrinks to a phone's width without scrolling.
    """
    words = {**DEFAULT_LABELS, **(labels or {})}
    points = list(series.get("points") or [])
    zone = _zone(str(series.get("time_zone") or "UTC"))
    fmt = _FORMATS.get(str(series.get("bucket") or "hour"), _FORMATS["hour"])
    cid = escape(chart_id, quote=True)

    def when(point: Mapping[str, Any]) -> str:
        at = point["at"]
        return at.astimezone(zone).strftime(fmt) if isinstance(at, datetime) else str(at)

    totals = {kind: sum(int(p.get(kind, 0)) for p in points) for kind in SERIES_KINDS}
    summary = " · ".join(f"{words[k]}: {totals[k]}" for k in SERIES_KINDS)
    if points:
        summary += f" ({when(points[0])} – {when(points[-1])})"
    else:
        summary = words["empty"]
    parts = [
        f'<svg class="campaign-chart" id="{cid}" role="img" aria-labelledby="{cid}-title {cid}-desc"'
        f' viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" preserveAspectRatio="xMidYMid meet"'
        f' style="max-width:100%;height:auto;display:block" xmlns="http://www.w3.org/2000/svg"'
        f' font-family="system-ui, sans-serif" font-size="14">',
        f'<title id="{cid}-title">{escape(words["title"])}</title>',
        f'<desc id="{cid}-desc">{escape(summary)}</desc>',
    ]
    x = _LEFT
    for kind in SERIES_KINDS:  # the legend, across the top
        parts.append(f'<rect x="{x}" y="8" width="14" height="14" rx="2" fill="{COLOURS[kind]}"/>')
        parts.append(f'<text x="{x + 19}" y="20" fill="#1d2430">{escape(words[kind])}</text>')
        x += 32 + _text_width(words[kind])
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    if not points:
        parts.append(f'<text x="{WIDTH // 2}" y="{_TOP + plot_h // 2}" text-anchor="middle" fill="#5d6878">'
                     f'{escape(words["empty"])}</text></svg>')
        return "".join(parts)
    top = _nice_max(max(max(int(p.get(k, 0)) for k in SERIES_KINDS) for p in points))
    for value in (0, top // 2 if top > 1 else None, top):  # grid lines with their values
        if value is None:
            continue
        y = _TOP + plot_h - plot_h * value / top
        parts.append(f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde2ea"/>')
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" fill="#5d6878">{_compact(value)}</text>')

    def xy(i: int, value: int) -> tuple[float, float]:
        px = _LEFT + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)
        return px, _TOP + plot_h - plot_h * value / top

    for kind in SERIES_KINDS:
        coords = [xy(i, int(p.get(kind, 0))) for i, p in enumerate(points)]
        if len(coords) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[kind]}" stroke-width="2"'
                         f' stroke-linejoin="round" data-series="{kind}"/>')
        if len(coords) <= 48:
            parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{COLOURS[kind]}" data-series="{kind}"/>'
                         for px, py in coords)
    ticks = sorted({0, (len(points) - 1) // 2, len(points) - 1})
    for i in ticks:
        px, _ = xy(i, 0)
        anchor = "start" if i == 0 and len(points) > 1 else "end" if i == len(points) - 1 and i else "middle"
        parts.append(f'<text x="{px:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}" fill="#5d6878">'
                     f'{escape(when(points[i]))}</text>')
    parts.append("</svg>")
    return "".join(parts)
