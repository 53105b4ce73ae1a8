#!/usr/bin/env python3
"""Draw latency against offered load from `rampart bench --json` reports.

Usage: plot_latency.py SWEEP.jsonl OUT.svg

One report per line (benches/sweep.sh writes them). Two panels, median and
99th percentile of the end-to-end latency, one line per signer; a hollow
marker is a rate the signer could not keep up with (it answered less than
95 % of the offered load). Plain SVG, no third-party packages.
"""
import json
import math
import sys

WIDTH, HEIGHT = 900, 450
PANEL_W, PANEL_H = 360, 300
MARGIN_L, MARGIN_T = 70, 60
GAP = 90
COLORS = {"rampart": "#1f6feb", "peer": "#d1242f"}


def load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if not r.get("latency") or not r.get("offered_rate"):
                continue
            runs.setdefault(r["label"], []).append(r)
    for label in runs:
        runs[label].sort(key=lambda r: r["offered_rate"])
    return runs


def nice_log_ticks(lo, hi):
    ticks = []
    exp = math.floor(math.log10(lo))
    while 10**exp <= hi * 10:
        for m in (1, 2, 5):
            v = m * 10**exp
            if lo <= v <= hi:
                ticks.append(v)
        exp += 1
    return ticks


def nice_bound(value, down):
    """The 1-2-5 step at or below (down) or at or above `value`."""
    steps = [m * 10**e for e in range(-1, 9) for m in (1, 2, 5)]
    if down:
        return max(s for s in steps if s <= value)
    return min(s for s in steps if s >= value)


def fmt_ms(us):
    ms = us / 1000
    return f"{ms:g} ms" if ms >= 1 else f"{us:g} µs"


def panel(out, x0, title, key, runs, rates, lat_lo, lat_hi):
    rmin, rmax = 0, max(rates) * 1.05

    def px(rate):
        return x0 + (rate - rmin) / (rmax - rmin) * PANEL_W

    def py(us):
        t = (math.log10(us) - math.log10(lat_lo)) / (math.log10(lat_hi) - math.log10(lat_lo))
        return MARGIN_T + PANEL_H - t * PANEL_H

    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T - 15}" text-anchor="middle" '
               f'font-size="15" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" '
               'fill="none" stroke="#888"/>')
    for t in nice_log_ticks(lat_lo, lat_hi):
        y = py(t)
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{fmt_ms(t)}</text>')
    for rate in rates:
        x = px(rate)
        out.append(f'<text x="{x:.1f}" y="{MARGIN_T + PANEL_H + 16}" text-anchor="middle" '
                   f'font-size="11">{rate:g}</text>')
    out.append(f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T + PANEL_H + 36}" text-anchor="middle" '
               'font-size="12">offered load (sign_event requests/s)</text>')
    for label, rs in runs.items():
        color = COLORS.get(label, "#555")
        points = [(px(r["offered_rate"]), py(max(r["latency"][key], lat_lo))) for r in rs]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for r, (x, y) in zip(rs, points):
            kept_up = r["throughput"] >= 0.95 * r["offered_rate"]
            fill = color if kept_up else "white"
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{fill}" stroke="{color}" '
                       'stroke-width="2"/>')


def main():
    src, dst = sys.argv[1], sys.argv[2]
    runs = load(src)
    if not runs:
        sys.exit(f"no open-loop reports in {src}")
    rates = sorted({r["offered_rate"] for rs in runs.values() for r in rs})
    lats = [r["latency"][k] for rs in runs.values() for r in rs for k in ("p50_us", "p99_us")]
    lat_lo = nice_bound(max(min(lats), 1), down=True)
    lat_hi = nice_bound(max(lats), down=False)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           'font-family="sans-serif">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    panel(out, MARGIN_L, "median latency", "p50_us", runs, rates, lat_lo, lat_hi)
    panel(out, MARGIN_L + PANEL_W + GAP, "99th percentile latency", "p99_us", runs, rates,
          lat_lo, lat_hi)
    lx = MARGIN_L
    for label in runs:
        color = COLORS.get(label, "#555")
        out.append(f'<line x1="{lx}" x2="{lx + 24}" y1="{HEIGHT - 40}" y2="{HEIGHT - 40}" '
                   f'stroke="{color}" stroke-width="3"/>')
        out.append(f'<text x="{lx + 30}" y="{HEIGHT - 36}" font-size="12">{label}</text>')
        lx += 110
    out.append(f'<text x="{lx + 10}" y="{HEIGHT - 36}" font-size="12">hollow marker: answered under '
               '95 % of the offered load (saturated)</text>')
    out.append(f'<text x="{MARGIN_L}" y="{HEIGHT - 14}" font-size="12">end-to-end latency of '
               'sign_event, 10 clients, ≤ 10 in flight each; embedded relay, signer and load '
               'generator share 2 cores</text>')
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
