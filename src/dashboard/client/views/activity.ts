// Data movement in flight (with progress) and the decision log, latest first.

import type { DashboardModel } from '../model.ts';
import { fraction } from '../model.ts';
import { bytes, clock, duration, esc, num, rate } from '../format.ts';

const MAX_OPS = 100;

export class MigrationsView {
  constructor(private readonly root: HTMLElement, private readonly count: HTMLElement) {}

  update(m: DashboardModel): void {
    const ops = m.operators;
    this.count.textContent = ops.length ? String(ops.length) : '';
    if (ops.length === 0) {
      this.root.innerHTML = '<p class="empty">No data movement in flight.</p>';
      return;
    }
    const rows = ops.slice(0, MAX_OPS).map((op) => {
      const f = fraction(op);
      const p = op.progress;
      const from = op.remove ? `<span class="mono">${esc(op.remove)}</span> → ` : '';
      const detail = p && p.totalBytes > 0
        ? `${bytes(p.bytesCopied)} / ${bytes(p.totalBytes)} · ${rate(p.rateBytesPerSec)}${p.etaSeconds !== undefined ? ` · ${duration(p.etaSeconds)} left` : ''}`
        : op.state === 'pending' ? 'waiting for a copy slot' : '';
      return `<div class="op" data-op="${esc(op.segmentId)}" data-progress="${f.toFixed(4)}" data-state="${op.state}">
        <div class="op-line">
          <span class="badge ${op.kind === 'repair' ? 'bad' : 'info'}">${op.kind}</span>
          <span class="mono">${esc(op.segmentId)}</span>
          <span>${from}<span class="mono">${esc(op.target)}</span></span>
          <span class="muted">${op.state}${op.attempts > 1 ? ` · attempt ${op.attempts}` : ''}</span>
          <span class="num pct">${num(100 * f)}%</span>
        </div>
        <div class="progress"><i style="width:${(100 * f).toFixed(1)}%"></i></div>
        <div class="op-detail muted">${esc(detail)}${detail ? ' · ' : ''}${esc(op.reason)}${op.error ? ` · <span class="err">${esc(op.error)}</span>` : ''}</div>
      </div>`;
    });
    if (ops.length > MAX_OPS) rows.push(`<p class="muted">and ${num(ops.length - MAX_OPS)} more</p>`);
    this.root.innerHTML = rows.join('');
  }
}

const TYPE_CLASS: Record<string, string> = { committed: 'ok', started: 'info', proposed: 'neutral', refused: 'warn', 'rolled-back': 'bad', cancelled: 'warn', replaced: 'neutral' };

export class EventsView {
  private signature = '';
  constructor(private readonly root: HTMLElement) {}

  update(m: DashboardModel): void {
    const ev = m.events;
    const sig = `${ev.length}|${ev[0]?.at}|${ev[0]?.type}|${ev[0]?.segmentId}`;
    if (sig === this.signature) return;
    this.signature = sig;
    if (ev.length === 0) {
      this.root.innerHTML = '<p class="empty">No decisions yet.</p>';
      return;
    }
    this.root.innerHTML = ev.map((e) => {
      const op = e.operator;
      const move = op ? `${op.remove ? `${esc(op.remove)} → ` : ''}${esc(op.target)}` : '';
      return `<div class="event" data-type="${esc(e.type)}" data-segment="${esc(e.segmentId)}">
        <span class="muted mono">${clock(e.at)}</span>
        <span class="badge ${TYPE_CLASS[e.type] ?? 'neutral'}">${esc(e.type)}</span>
        <span class="mono">${esc(e.segmentId)}</span>
        <span class="mono muted">${move}</span>
        <span class="reason">${esc(e.reason)}</span>
      </div>`;
    }).join('');
  }
}
