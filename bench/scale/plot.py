#!/usr/bin/env python3
"""Plots bench/scale/results.tsv (bench/scale/run.sh) as an SVG: throughput (bars, left axis)
and p99 enqueue-to-start latency (line, right axis) per number of runners, with the server's
connections under each bar. Standard library only (no gnuplot or matplotlib needed).
Usage: python3 bench/scale/plot.py [results.tsv] [out.svg] [subtitle]"""
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "bench/scale/results.tsv"
out = sys.argv[2] if len(sys.argv) > 2 else "docs/scaling.svg"
subtitle = sys.argv[3] if len(sys.argv) > 3 else ""
rows = []
with open(src) as f:
    head = f.readline().rstrip("\n").split("\t")
    for line in f:
        if line.strip():
            rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))

W, H, L, R, T, B = 720, 420, 80, 80, 60, 70
pw, ph = W - L - R, H - T - B
rate = [float(r["jobs_per_s"] or 0) for r in rows]
p99 = [float(r["p99_ms"] or 0) for r in rows]
rmax = max(rate + [1]) * 1.15
lmax = max(p99 + [1]) * 1.15
n = len(rows)
slot = pw / max(n, 1)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
       f'font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="22" text-anchor="middle" font-size="15">jobrunner: N runners on one '
       f'PostgreSQL, no-op jobs</text>',
       f'<text x="{W/2}" y="40" text-anchor="middle" fill="#555">{subtitle}</text>',
       f'<line x1="{L}" y1="{T+ph}" x2="{L+pw}" y2="{T+ph}" stroke="black"/>',
       f'<line x1="{L}" y1="{T}" x2="{L}" y2="{T+ph}" stroke="black"/>',
       f'<line x1="{L+pw}" y1="{T}" x2="{L+pw}" y2="{T+ph}" stroke="black"/>']
for i in range(6):
    y = T + ph - ph * i / 5
    svg.append(f'<line x1="{L}" y1="{y:.1f}" x2="{L+pw}" y2="{y:.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L-6}" y="{y+4:.1f}" text-anchor="end" fill="#2a6ebb">'
               f'{rmax*i/5:.0f}</text>')
    svg.append(f'<text x="{L+pw+6}" y="{y+4:.1f}" fill="#c0392b">{lmax*i/5:.0f}</text>')
svg.append(f'<text x="18" y="{T+ph/2}" transform="rotate(-90 18 {T+ph/2})" text-anchor="middle" '
           f'fill="#2a6ebb">throughput (jobs/s)</text>')
svg.append(f'<text x="{W-14}" y="{T+ph/2}" transform="rotate(90 {W-14} {T+ph/2})" '
           f'text-anchor="middle" fill="#c0392b">p99 enqueue-to-start (ms)</text>')
pts = []
for i, r in enumerate(rows):
    cx = L + slot * (i + 0.5)
    bh = ph * rate[i] / rmax
    svg.append(f'<rect x="{cx-slot*0.3:.1f}" y="{T+ph-bh:.1f}" width="{slot*0.6:.1f}" '
               f'height="{bh:.1f}" fill="#2a6ebb" opacity="0.8"/>')
    svg.append(f'<text x="{cx:.1f}" y="{T+ph+16}" text-anchor="middle">{r["runners"]} '
               f'runner{"s" if r["runners"] != "1" else ""}</text>')
    svg.append(f'<text x="{cx:.1f}" y="{T+ph+32}" text-anchor="middle" fill="#555">'
               f'{r["connections"]} conns</text>')
    pts.append((cx, T + ph - ph * p99[i] / lmax))
svg.append('<polyline fill="none" stroke="#c0392b" stroke-width="2" points="' +
           " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
for x, y in pts:
    svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="#c0392b"/>')
svg.append(f'<text x="{L}" y="{H-12}" fill="#555">bars: throughput of a drained backlog; line: p99 '
           f'latency at a paced rate; conns: the runners\' server connections (peak)</text>')
svg.append("</svg>")
with open(out, "w") as f:
    f.write("\n".join(svg) + "\n")
print(out)
