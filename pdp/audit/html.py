"""The review as one self-contained HTML file: inline CSS and SVG plots drawn here, no script,
no font, no network resource, so it opens anywhere (an air-gapped auditor's laptop too)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from html import escape

from .review import Review

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
ALLOW_COLOUR, DENY_COLOUR, USED_COLOUR, UNUSED_COLOUR = "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e"
MAX_LINES = 8  # identities drawn in the timeline (the busiest)


def _buckets(first: str, last: str) -> tuple[list[str], int, str]:
    """Time buckets from ``first`` to ``last``: minutes when the span is under three hours,
    else hours (at most 31 days of them). Returns (bucket keys, key length, unit)."""
    fmt, width, unit, step = "%Y-%m-%dT%H:%M", 16, "minute", timedelta(minutes=1)
    try:
        start = datetime.strptime(first[:16], fmt)
        end = datetime.strptime(last[:16], fmt)
    except ValueError:
        return sorted({first[:16], last[:16]}), 16, "minute"
    if end - start >= timedelta(hours=3):
        fmt, width, unit, step = "%Y-%m-%dT%H", 13, "hour", timedelta(hours=1)
        start = start.replace(minute=0)
    out = []
    while start <= end and len(out) < 24 * 31:
        out.append(start.strftime(fmt))
        start += step
    return out, width, unit


def timeline_svg(review: Review) -> str:
    views = sorted(review.identities.values(), key=lambda v: -v.requests)[:MAX_LINES]
    stamps = [v.first_seen for v in views if v.first_seen] + [v.last_seen for v in views if v.last_seen]
    if not stamps:
        return "<p>No requests.</p>"
    hours, width_key, unit = _buckets(min(stamps), max(stamps))
    series = []
    for view in views:
        counts: Counter = Counter()
        for minute, n in view.timeline.items():
            counts[minute[:width_key]] += n
        series.append(counts)
    width, height, left, bottom = 760, 260, 50, 40
    peak = max((c[h] for c in series for h in hours), default=1) or 1
    step = (width - left - 20) / max(len(hours) - 1, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 30 + 18 * len(views)}" '
             f'role="img" aria-label="requests over time per identity">',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#444"/>',
             f'<line x1="{left}" y1="10" x2="{left}" y2="{height - bottom}" stroke="#444"/>',
             f'<text x="{left - 6}" y="16" text-anchor="end" font-size="11">{peak}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end" font-size="11">0</text>',
             f'<text x="{left}" y="{height - bottom + 16}" font-size="11">{escape(hours[0])}</text>',
             f'<text x="{width - 10}" y="{height - bottom + 16}" text-anchor="end" font-size="11">'
             f'{escape(hours[-1])} (UTC, requests per {unit})</text>']
    for i, (view, counts) in enumerate(zip(views, series)):
        colour = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{left + j * step:.1f},{height - bottom - counts[h] / peak * (height - bottom - 10):.1f}"
                          for j, h in enumerate(hours))
        if len(hours) == 1:
            x, y = points.split(",")
            parts.append(f'<circle cx="{x}" cy="{y}" r="4" fill="{colour}"/>')
        else:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        y = height + 10 + 18 * i
        parts.append(f'<rect x="{left}" y="{y - 10}" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{left + 18}" y="{y}" font-size="12">{escape(view.id)} ({view.requests})</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(rows: list[tuple[str, int, int]], labels: tuple[str, str], colours: tuple[str, str], what: str) -> str:
    """Horizontal stacked bars: ``(name, first, second)`` per row."""
    if not rows:
        return "<p>Nothing to draw.</p>"
    width, left, bar = 760, 180, 18
    peak = max(a + b for _, a, b in rows) or 1
    scale = (width - left - 80) / peak
    height = 30 + len(rows) * (bar + 8)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(what)}">',
             f'<rect x="{left}" y="4" width="12" height="12" fill="{colours[0]}"/>'
             f'<text x="{left + 16}" y="15" font-size="12">{escape(labels[0])}</text>'
             f'<rect x="{left + 120}" y="4" width="12" height="12" fill="{colours[1]}"/>'
             f'<text x="{left + 136}" y="15" font-size="12">{escape(labels[1])}</text>']
    for i, (name, a, b) in enumerate(rows):
        y = 26 + i * (bar + 8)
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" font-size="12">{escape(name[:28])}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{a * scale:.1f}" height="{bar}" fill="{colours[0]}"/>')
        parts.append(f'<rect x="{left + a * scale:.1f}" y="{y}" width="{b * scale:.1f}" height="{bar}" '
                     f'fill="{colours[1]}"/>')
        parts.append(f'<text x="{left + (a + b) * scale + 6:.1f}" y="{y + 13}" font-size="11">{a} / {b}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _list(items) -> str:
    return ", ".join(f"<code>{escape(str(i))}</code>" for i in items) or "—"


def render_html(review: Review) -> str:
    data = review.to_dict()
    views = data["identities"]
    rows = "".join(
        f"<tr><td><code>{escape(v['id'])}</code></td><td>{v['requests']}</td><td>{v['allowed']}</td>"
        f"<td>{v['denied']}</td><td>{escape(v['first_seen'] or '')}</td><td>{escape(v['last_seen'] or '')}</td>"
        f"<td>{_list(v['scopes_presented'])}</td><td>{_list(v['scopes_used'])}</td>"
        f"<td class='warn'>{_list(v['scopes_unused'])}</td>"
        f"<td>{'<br>'.join(f'<code>{escape(r)}</code> {n}' for r, n in v['denials_by_rule'].items()) or '—'}</td></tr>"
        for v in views)
    decisions = bars_svg([(v["id"], v["allowed"], v["denied"]) for v in views], ("allowed", "denied"),
                         (ALLOW_COLOUR, DENY_COLOUR), "allowed and denied per identity")
    scopes = bars_svg([(v["id"], len(v["scopes_used"]), len(v["scopes_unused"])) for v in views
                       if v["scopes_presented"]], ("scopes used", "scopes unused"), (USED_COLOUR, UNUSED_COLOUR),
                      "scope usage per identity")
    credentials = "".join(
        f"<tr><td><code>{escape(c['identity'])}</code></td><td><code>{escape(c['rule'])}</code></td>"
        f"<td><code>{escape(str(c['credential']))}</code></td><td>{c['requests']}</td>"
        f"<td>{escape(c['first_seen'] or '')}</td><td>{escape(c['last_seen'] or '')}</td></tr>"
        for c in data["credentials"])
    controls = "".join(
        f"<tr><td>{escape(key)}</td><td>{escape(cid)}</td><td>{escape(entry['name'])}</td><td>{entry['findings']}</td></tr>"
        for key, entries in data["controls"].items() for cid, entry in sorted(entries.items()))
    inventory = (f"the inventory <code>data.{escape(review.inventory_name)}</code>" if review.inventory is not None
                 else f"no inventory (<code>data.{escape(review.inventory_name)}</code> is not loaded)")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pdp access review</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; background: #fff; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; font-size: 13px; }}
th {{ background: #eef; }}
.warn code {{ background: #fff1dd; }}
h2 {{ margin-top: 1.6em; }}
</style></head><body>
<h1>Access review of machine identities</h1>
<p>Policies revision <code>{escape(review.revision)}</code>; {inventory}. {len(views)} identities seen,
{sum(v['requests'] for v in views)} decisions, {data['lines_without_input']} of them logged without input.</p>
<h2>Requests over time</h2>{timeline_svg(review)}
<h2>Allowed and denied</h2>{decisions}
<h2>Scope usage</h2>
<p>A scope is used when a permit that allowed the request tested it on the presented scopes; an unused
scope is held but never needed: a least-privilege candidate.</p>{scopes}
<h2>Identities</h2>
<table><tr><th>identity</th><th>requests</th><th>allowed</th><th>denied</th><th>first seen</th><th>last seen</th>
<th>scopes presented</th><th>scopes used</th><th>scopes unused</th><th>denials by rule</th></tr>{rows}</table>
<h2>Inventory</h2>
<p>Inventoried, never seen: {_list(data['never_seen'])}</p>
<p>Seen, not inventoried: {_list(data['not_inventoried'])}</p>
<h2>Credentials that break a lifetime rule</h2>
{f'<table><tr><th>identity</th><th>rule</th><th>credential</th><th>requests</th><th>first seen</th><th>last seen</th></tr>{credentials}</table>' if credentials else '<p>None.</p>'}
<h2>Controls</h2>
{f'<table><tr><th>framework</th><th>control</th><th>name</th><th>findings</th></tr>{controls}</table>' if controls else '<p>No findings.</p>'}
</body></html>
"""
