// A small SVG line chart: time on x, one or more series on y, gaps where a
// value is null, a hover read-out. Hand-written because the console embeds
// no third-party code; it draws what the pages need and nothing more.
import { h, svg } from './lib.js';

const W = 720; // viewBox width; the SVG scales to its box
const PAD = { l: 52, r: 10, t: 8, b: 20 };

export class Chart {
  // opts: {title, height, yFormat(v), xFormat(t), yMin, yMaxAtLeast}
  constructor(opts) {
    this.o = Object.assign({ height: 150, yFormat: (v) => niceNum(v), xFormat: hhmmss, yMin: 0, yMaxAtLeast: 0 }, opts);
    this.el = h('div', { class: 'chart' });
    this.head = h('div', { class: 'chart-head' }, h('span', { class: 'chart-title' }, this.o.title));
    this.legend = h('span', { class: 'legend' });
    this.head.appendChild(this.legend);
    this.svg = svg('svg', { viewBox: `0 0 ${W} ${this.o.height}`, class: 'chart-svg', role: 'img', 'aria-label': this.o.title });
    this.tip = h('div', { class: 'chart-tip', hidden: true });
    this.el.append(this.head, h('div', { class: 'chart-body' }, this.svg, this.tip));
    this.hoverX = null;
    this.svg.addEventListener('mousemove', (ev) => {
      const r = this.svg.getBoundingClientRect();
      this.hoverX = ((ev.clientX - r.left) / r.width) * W;
      this.drawHover();
    });
    this.svg.addEventListener('mouseleave', () => { this.hoverX = null; this.drawHover(); });
    this.data = null;
  }

  // update draws series [{name, color, xs:[ms], ys:[number|null], dash}]
  // over x from xMin to xMax (ms).
  update({ series, xMin, xMax }) {
    this.data = { series, xMin, xMax };
    const H = this.o.height;
    let yMax = this.o.yMaxAtLeast;
    let yMin = this.o.yMin;
    for (const s of series) for (const v of s.ys) if (v != null) { if (v > yMax) yMax = v; if (v < yMin) yMin = v; }
    if (yMax <= yMin) yMax = yMin + 1;
    const ticks = niceTicks(yMin, yMax, 4);
    yMax = ticks[ticks.length - 1];
    yMin = ticks[0];
    if (xMax <= xMin) xMax = xMin + 1;
    const X = (t) => PAD.l + ((t - xMin) / (xMax - xMin)) * (W - PAD.l - PAD.r);
    const Y = (v) => H - PAD.b - ((v - yMin) / (yMax - yMin)) * (H - PAD.t - PAD.b);
    this.X = X; this.Y = Y;
    const g = [];
    for (const t of ticks) {
      g.push(svg('line', { x1: PAD.l, x2: W - PAD.r, y1: Y(t), y2: Y(t), class: 'grid' }));
      g.push(svg('text', { x: PAD.l - 6, y: Y(t) + 4, class: 'axis', 'text-anchor': 'end' }, this.o.yFormat(t)));
    }
    const span = xMax - xMin;
    const step = this.o.xStep ? this.o.xStep(span) : pickStep(span);
    for (let t = Math.ceil(xMin / step) * step; t <= xMax; t += step) {
      g.push(svg('line', { x1: X(t), x2: X(t), y1: PAD.t, y2: H - PAD.b, class: 'grid' }));
      g.push(svg('text', { x: X(t), y: H - 5, class: 'axis', 'text-anchor': 'middle' }, this.o.xFormat(t)));
    }
    for (const s of series) {
      let d = '';
      let pen = false;
      for (let i = 0; i < s.xs.length; i++) {
        const v = s.ys[i];
        if (v == null || s.xs[i] < xMin) { pen = false; continue; }
        d += (pen ? 'L' : 'M') + X(s.xs[i]).toFixed(1) + ' ' + Y(v).toFixed(1);
        pen = true;
      }
      if (s.dots) {
        for (let i = 0; i < s.xs.length; i++) if (s.ys[i] != null) g.push(svg('circle', { cx: X(s.xs[i]), cy: Y(s.ys[i]), r: 2.2, fill: s.color }));
      }
      g.push(svg('path', { d, class: 'line', stroke: s.color, 'stroke-dasharray': s.dash || null }));
    }
    this.hover = svg('g', { class: 'hover' });
    g.push(this.hover);
    this.svg.replaceChildren(...g);
    this.legend.replaceChildren(...series.map((s) => {
      const last = lastValue(s.ys);
      return h('span', { class: 'key' }, h('i', { style: `background:${s.color}` }), s.name, ' ', h('b', null, last == null ? '–' : this.o.yFormat(last)));
    }));
    this.drawHover();
  }

  drawHover() {
    if (!this.hover || !this.data) return;
    this.hover.replaceChildren();
    if (this.hoverX == null) { this.tip.hidden = true; return; }
    const { series, xMin, xMax } = this.data;
    const t = xMin + ((this.hoverX - PAD.l) / (W - PAD.l - PAD.r)) * (xMax - xMin);
    const rows = [];
    let at = null;
    for (const s of series) {
      const i = nearest(s.xs, t);
      if (i < 0) continue;
      at = s.xs[i];
      rows.push(h('div', null, h('i', { style: `background:${s.color}` }), s.name + ': ', h('b', null, s.ys[i] == null ? '–' : this.o.yFormat(s.ys[i]))));
    }
    if (at == null) { this.tip.hidden = true; return; }
    const x = this.X(at);
    this.hover.appendChild(svg('line', { x1: x, x2: x, y1: PAD.t, y2: this.o.height - PAD.b, class: 'cursor' }));
    this.tip.replaceChildren(h('div', { class: 'tip-time' }, this.o.xFormat(at)), ...rows);
    this.tip.hidden = false;
    this.tip.style.left = Math.min(75, (x / W) * 100) + '%';
  }
}

function nearest(xs, t) {
  if (!xs.length) return -1;
  let lo = 0, hi = xs.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid] < t) lo = mid + 1; else hi = mid;
  }
  if (lo > 0 && Math.abs(xs[lo - 1] - t) < Math.abs(xs[lo] - t)) lo--;
  return lo;
}

function lastValue(ys) {
  for (let i = ys.length - 1; i >= 0; i--) if (ys[i] != null) return ys[i];
  return null;
}

function pickStep(span) {
  const steps = [1e3, 5e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 1800e3, 3600e3, 7200e3, 21600e3, 86400e3];
  for (const s of steps) if (span / s <= 8) return s;
  return steps[steps.length - 1];
}

export function niceTicks(min, max, n) {
  const raw = (max - min) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const out = [];
  for (let v = Math.floor(min / step) * step; v <= max + step * 0.999; v += step) {
    out.push(+v.toPrecision(12));
    if (v >= max) break;
  }
  return out;
}

export function niceNum(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k';
  if (a >= 10 || a === 0) return v.toFixed(0);
  if (a >= 1) return v.toFixed(1);
  return v.toPrecision(2);
}

export function hhmmss(t) { return new Date(t).toISOString().slice(11, 19); }
