// The servers table, virtualised: only the rows in view are in the DOM, so 1,000 servers
// cost the same as 20.

import type { DashboardModel, ServerRow } from '../model.ts';
import { ago, bytes, esc, num, rate } from '../format.ts';

const ROW_H = 30;
const OVERSCAN = 6;

type SortKey = 'risk' | 'id' | 'segments' | 'traffic';

const COLUMNS: { key: string; label: string; sort?: SortKey; cls?: string }[] = [
  { key: 'id', label: 'Server', sort: 'id' },
  { key: 'state', label: 'State' },
  { key: 'score', label: 'Failure score', sort: 'risk' },
  { key: 'segments', label: 'Segments', sort: 'segments', cls: 'num' },
  { key: 'primaries', label: 'Primary', cls: 'num' },
  { key: 'space', label: 'Assigned', cls: 'num' },
  { key: 'traffic', label: 'Traffic', sort: 'traffic', cls: 'num' },
  { key: 'heartbeat', label: 'Heartbeat', cls: 'num' },
];

export class ServersView {
  private rows: ServerRow[] = [];
  private sort: SortKey = 'risk';
  private readonly scroller: HTMLElement;
  private readonly body: HTMLElement;
  private readonly spacer: HTMLElement;
  private selected?: string;

  constructor(private readonly root: HTMLElement, private readonly onSelect: (id: string) => void) {
    root.innerHTML = `
      <div class="srv-head srv-grid">${COLUMNS.map((c) => `<div class="${c.cls ?? ''}${c.sort ? ' sortable' : ''}" data-sort="${c.sort ?? ''}">${c.label}</div>`).join('')}</div>
      <div class="srv-scroll"><div class="srv-spacer"><div class="srv-body"></div></div></div>`;
    this.scroller = root.querySelector('.srv-scroll')!;
    this.spacer = root.querySelector('.srv-spacer')!;
    this.body = root.querySelector('.srv-body')!;
    this.scroller.addEventListener('scroll', () => this.paint(), { passive: true });
    root.querySelector('.srv-head')!.addEventListener('click', (ev) => {
      const key = (ev.target as HTMLElement).closest<HTMLElement>('[data-sort]')?.dataset.sort as SortKey | '';
      if (key) {
        this.sort = key;
        this.order();
        this.paint();
      }
    });
    this.body.addEventListener('click', (ev) => {
      const id = (ev.target as HTMLElement).closest<HTMLElement>('[data-server]')?.dataset.server;
      if (id) this.onSelect(id);
    });
  }

  update(m: DashboardModel, selected?: string): void {
    this.rows = m.rows.slice();
    this.selected = selected;
    this.order();
    this.spacer.style.height = `${this.rows.length * ROW_H}px`;
    // Short lists take only the room they need; long ones scroll inside 12 rows.
    this.scroller.style.height = `${Math.max(ROW_H, Math.min(this.rows.length, 12) * ROW_H)}px`;
    this.paint();
  }

  private order(): void {
    const by: Record<SortKey, (a: ServerRow, b: ServerRow) => number> = {
      risk: (a, b) => (b.score?.score ?? -1) - (a.score?.score ?? -1) || Number(b.state === 'down') - Number(a.state === 'down') || Number(b.draining) - Number(a.draining) || a.id.localeCompare(b.id),
      id: (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }),
      segments: (a, b) => b.segments - a.segments || a.id.localeCompare(b.id),
      traffic: (a, b) => b.bytesPerSec - a.bytesPerSec || a.id.localeCompare(b.id),
    };
    this.rows.sort(by[this.sort]);
    this.root.querySelectorAll<HTMLElement>('[data-sort]').forEach((el) => el.classList.toggle('sorted', el.dataset.sort === this.sort));
  }

  private paint(): void {
    const top = this.scroller.scrollTop;
    const h = this.scroller.clientHeight || 12 * ROW_H;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + h) / ROW_H) + OVERSCAN);
    this.body.style.transform = `translateY(${first * ROW_H}px)`;
    let html = '';
    for (let i = first; i < last; i++) html += this.row(this.rows[i]);
    this.body.innerHTML = html;
  }

  private row(r: ServerRow): string {
    const state = r.state === 'down' ? '<span class="badge bad">down</span>'
      : r.draining ? `<span class="badge warn" title="${esc(r.drainReason)}">draining</span>`
        : '<span class="badge ok">up</span>';
    const sc = r.score;
    const score = sc
      ? `<span class="score-cell"><span class="bar"><i class="lvl-${sc.level}" style="width:${Math.max(2, Math.min(100, sc.score))}%"></i></span><b>${num(sc.score)}</b><span class="muted">${esc(sc.mode)}</span></span>`
      : '<span class="muted">—</span>';
    const cap = r.capacityBytes > 0 ? ` <span class="muted">/ ${bytes(r.capacityBytes)}</span>` : '';
    const joining = r.joining ? ` <span class="muted" title="copies arriving">+${r.joining}</span>` : '';
    return `<div class="srv-row srv-grid${r.id === this.selected ? ' selected' : ''}" data-server="${esc(r.id)}" style="height:${ROW_H}px">
      <div class="mono" data-col="id">${esc(r.id)}</div>
      <div data-col="state">${state}</div>
      <div data-col="score">${score}</div>
      <div class="num" data-col="segments">${num(r.segments)}${joining}</div>
      <div class="num" data-col="primaries">${num(r.primaries)}</div>
      <div class="num" data-col="space">${bytes(r.assignedBytes)}${cap}</div>
      <div class="num" data-col="traffic">${r.bytesPerSec > 0 ? rate(r.bytesPerSec) : '<span class="muted">—</span>'}</div>
      <div class="num" data-col="heartbeat">${ago(r.heartbeatAgoMs)}</div>
    </div>`;
  }
}
