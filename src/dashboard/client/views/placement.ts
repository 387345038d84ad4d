// Where segments live: a servers × volumes heatmap on one canvas (a cell's colour is how many
// segments of that volume the server holds), a lookup for one segment's replicas, and the
// hottest segments. Canvas, not DOM, so 1,000 servers × 100,000 segments stay one draw.

import type { DashboardModel, PlacementMatrix } from '../model.ts';
import { esc, num, rate } from '../format.ts';

const GUTTER = 120;
const HEADER = 22;

export class PlacementView {
  private matrix?: PlacementMatrix;
  private model?: DashboardModel;
  private geom = { cw: 0, ch: 0, cols: 0 };
  private readonly canvas: HTMLCanvasElement;
  private readonly tip: HTMLElement;
  private readonly note: HTMLElement;
  private readonly lookup: HTMLInputElement;
  private readonly lookupOut: HTMLElement;
  private readonly hot: HTMLElement;

  constructor(root: HTMLElement) {
    root.innerHTML = `
      <div class="matrix-wrap"><canvas class="matrix" data-testid="placement-canvas"></canvas><div class="tip" hidden></div></div>
      <div class="matrix-note muted"></div>
      <label class="lookup">Find a segment <input type="search" placeholder="volume/index" spellcheck="false" data-testid="segment-lookup"></label>
      <div class="lookup-out" data-testid="segment-lookup-result"></div>
      <h3>Hottest segments</h3>
      <div class="hot" data-testid="hottest"></div>`;
    this.canvas = root.querySelector('canvas')!;
    this.tip = root.querySelector('.tip')!;
    this.note = root.querySelector('.matrix-note')!;
    this.lookup = root.querySelector('input')!;
    this.lookupOut = root.querySelector('.lookup-out')!;
    this.hot = root.querySelector('.hot')!;
    this.canvas.addEventListener('mousemove', (ev) => this.hover(ev));
    this.canvas.addEventListener('mouseleave', () => (this.tip.hidden = true));
    this.lookup.addEventListener('input', () => this.showLookup());
  }

  update(m: DashboardModel): void {
    this.model = m;
    this.matrix = m.matrix;
    this.draw();
    this.showLookup();
    this.showHot(m);
  }

  private draw(): void {
    const mx = this.matrix!;
    const nS = mx.servers.length;
    const nV = mx.volumes.length;
    const width = Math.max(240, (this.canvas.parentElement!.clientWidth || 480));
    const avail = width - GUTTER;
    const cw = nV === 0 ? 0 : Math.max(3, Math.min(72, Math.floor(avail / nV)));
    const cols = Math.min(nV, Math.floor(avail / Math.max(cw, 1)));
    const ch = nS <= 40 ? 20 : nS <= 150 ? 8 : nS <= 400 ? 4 : 2;
    this.geom = { cw, ch, cols };
    const height = HEADER + Math.max(1, nS) * ch;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.width = `${width}px`;
    this.canvas.style.height = `${height}px`;
    const g = this.canvas.getContext('2d')!;
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, width, height);
    g.font = '11px system-ui, sans-serif';
    g.textBaseline = 'middle';
    this.note.textContent = nV === 0 ? 'No volumes yet.'
      : `${num(nS)} servers × ${num(nV)} volumes${cols < nV ? ` (first ${cols} shown; hover a cell for details)` : ' — hover a cell for details'}. Darker = more segments.`;
    if (nV === 0 || nS === 0) return;
    // Volume names when they fit.
    g.fillStyle = '#5b6470';
    for (let v = 0; v < cols && cw >= 28; v++) g.fillText(clip(g, mx.volumes[v], cw - 4), GUTTER + v * cw + 2, HEADER / 2);
    const max = Math.max(1, mx.maxCount);
    if (ch >= 14 && cw >= 8) {
      this.drawCells(g, mx, cols, cw, ch, max);
    } else {
      // Big matrices: one pixel per cell written straight into an image, then scaled up
      // without smoothing: O(cells) array stores instead of O(cells) canvas calls.
      const img = new ImageData(cols, nS);
      const px = new Uint32Array(img.data.buffer);
      const lut = palette();
      for (let s = 0; s < nS; s++) {
        const base = s * nV;
        for (let v = 0; v < cols; v++) {
          const c = mx.counts[base + v];
          px[s * cols + v] = c === 0 ? lut[0] : lut[1 + Math.min(254, Math.floor((254 * c) / max))];
        }
      }
      const off = document.createElement('canvas');
      off.width = cols;
      off.height = nS;
      off.getContext('2d')!.putImageData(img, 0, 0);
      g.imageSmoothingEnabled = false;
      g.drawImage(off, GUTTER, HEADER, cols * cw, nS * ch);
      if (ch >= 14) {
        g.fillStyle = '#2b313a';
        for (let s = 0; s < nS; s++) g.fillText(clip(g, mx.servers[s], GUTTER - 8), 4, HEADER + s * ch + ch / 2);
      }
    }
    if (ch < 14) {
      g.fillStyle = '#5b6470';
      g.fillText(`${num(nS)} servers ↓`, 4, HEADER + 8);
    }
  }

  private drawCells(g: CanvasRenderingContext2D, mx: PlacementMatrix, cols: number, cw: number, ch: number, max: number): void {
    const nV = mx.volumes.length;
    for (let s = 0; s < mx.servers.length; s++) {
      const y = HEADER + s * ch;
      g.fillStyle = '#2b313a';
      g.fillText(clip(g, mx.servers[s], GUTTER - 8), 4, y + ch / 2);
      for (let v = 0; v < cols; v++) {
        const c = mx.counts[s * nV + v];
        g.fillStyle = c === 0 ? EMPTY : shade(c / max);
        g.fillRect(GUTTER + v * cw, y, cw - 1, ch - 1);
        if (c > 0 && cw >= 24) {
          g.fillStyle = c / max > 0.55 ? '#fff' : '#1d2a33';
          g.fillText(String(c), GUTTER + v * cw + 4, y + ch / 2);
        }
      }
    }
  }

  private hover(ev: MouseEvent): void {
    const mx = this.matrix;
    if (!mx) return;
    const r = this.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left;
    const y = ev.clientY - r.top;
    const s = Math.floor((y - HEADER) / this.geom.ch);
    const v = Math.floor((x - GUTTER) / Math.max(1, this.geom.cw));
    if (s < 0 || s >= mx.servers.length || v < 0 || v >= this.geom.cols) {
      this.tip.hidden = true;
      return;
    }
    const i = s * mx.volumes.length + v;
    this.tip.hidden = false;
    this.tip.innerHTML = `<b class="mono">${esc(mx.servers[s])}</b> · ${esc(mx.volumes[v])}<br>${num(mx.counts[i])} segments, ${num(mx.primaries[i])} as primary`;
    this.tip.style.left = `${Math.min(x + 12, r.width - 200)}px`;
    this.tip.style.top = `${y + 12}px`;
  }

  private showLookup(): void {
    const q = this.lookup.value.trim();
    if (!q || !this.model) {
      this.lookupOut.innerHTML = '';
      return;
    }
    const e = this.model.segmentIndex.get(q);
    if (!e) {
      this.lookupOut.innerHTML = `<span class="muted">No segment ${esc(q)}.</span>`;
      return;
    }
    const reps = e.replicas.map((r, i) => `<span class="chip mono${i === 0 ? ' primary' : ''}">${esc(r)}${i === 0 ? ' · primary' : ''}</span>`).join(' ');
    const join = (e.joining ?? []).map((r) => `<span class="chip mono joining">${esc(r)} · joining</span>`).join(' ');
    this.lookupOut.innerHTML = `<span class="mono">${esc(e.segmentId)}</span> epoch ${e.epoch} <span class="badge ${e.state === 'ok' ? 'ok' : 'bad'}">${e.state}</span><div>${reps} ${join}</div>`;
  }

  private showHot(m: DashboardModel): void {
    if (!m.heatAvailable) {
      this.hot.innerHTML = '<p class="empty">No heat data yet — the orchestrator does not serve segment heat.</p>';
      return;
    }
    if (m.hottest.length === 0) {
      this.hot.innerHTML = '<p class="empty">No segment traffic.</p>';
      return;
    }
    const top = Math.max(1, m.hottest[0].bytesPerSec);
    this.hot.innerHTML = m.hottest.map((h) => `<div class="hot-row" data-segment="${esc(h.segmentId)}">
        <span class="mono">${esc(h.segmentId)}</span>
        <span class="bar"><i style="width:${Math.max(2, (100 * h.bytesPerSec) / top)}%"></i></span>
        <span class="num">${rate(h.bytesPerSec)}</span>
        <span class="num muted">${num(h.readsPerSec + h.writesPerSec, 1)} op/s</span>
        <span class="mono muted">${esc(h.replicas[0] ?? '?')}</span>
      </div>`).join('');
  }
}

const EMPTY = '#f1f3f5';

/** Calm sequential teal: light at few segments, deep at the most loaded cell. */
function shade(f: number): string {
  const [r, g, b] = rgb(f);
  return `rgb(${r} ${g} ${b})`;
}

function rgb(f: number): [number, number, number] {
  // Interpolates #dceff2 → #1f5f70 (perceptually: light teal to deep teal).
  const t = Math.sqrt(Math.min(1, Math.max(0, f)));
  const lerp = (a: number, b: number) => Math.round(a + (b - a) * t);
  return [lerp(0xdc, 0x1f), lerp(0xef, 0x5f), lerp(0xf2, 0x70)];
}

let lut: Uint32Array | undefined;
/** 256 colours as little-endian RGBA words for ImageData: [0] empty, [1..255] by load. */
function palette(): Uint32Array {
  if (lut) return lut;
  lut = new Uint32Array(256);
  const word = (r: number, g: number, b: number) => ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  lut[0] = word(0xf1, 0xf3, 0xf5);
  for (let i = 1; i < 256; i++) lut[i] = word(...rgb(i / 255));
  return lut;
}

function clip(g: CanvasRenderingContext2D, s: string, w: number): string {
  if (g.measureText(s).width <= w) return s;
  let t = s;
  while (t.length > 1 && g.measureText(`${t}…`).width > w) t = t.slice(0, -1);
  return `${t}…`;
}
