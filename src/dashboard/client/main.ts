// Dashboard entry point: polls the orchestrator, rebuilds the model, updates every view.
// `?poll=0` turns polling off (used by the scale test, which feeds synthetic snapshots
// through `window.presageDashboard.ingest`).

import { ApiSource, UnauthorizedError, token } from './api.ts';
import { buildModel, ScoreHistory, type DashboardModel, type Snapshot } from './model.ts';
import { clock, num, rate } from './format.ts';
import { ServersView } from './views/servers.ts';
import { PlacementView } from './views/placement.ts';
import { EventsView, MigrationsView } from './views/activity.ts';
import { ScoresView } from './views/scores.ts';

const $ = <T extends HTMLElement = HTMLElement>(sel: string) => document.querySelector<T>(sel)!;

const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(0, Number(params.get('poll') ?? 1500));

const history = new ScoreHistory();
let selected: string | undefined;
let last: DashboardModel | undefined;

const select = (id: string) => {
  selected = id;
  if (last) render(last);
};
const servers = new ServersView($('#servers'), select);
const placement = new PlacementView($('#placement'));
const migrations = new MigrationsView($('#migrations'), $('#migrations-count'));
const events = new EventsView($('#events'));
const scores = new ScoresView($('#scores'), history, select);

function render(m: DashboardModel): void {
  const t = m.totals;
  $('#summary').innerHTML = [
    chip('servers', `${num(t.up)} up${t.down ? ` · <b class="err">${num(t.down)} down</b>` : ''}${t.draining ? ` · ${num(t.draining)} draining` : ''}`),
    chip('at risk', t.atRisk ? `<b class="warn-text">${num(t.atRisk)}</b>` : '0'),
    chip('volumes', num(t.volumes)),
    chip('segments', `${num(t.segments)}${t.degraded ? ` · <b class="err">${num(t.degraded)} degraded</b>` : ''}`),
    chip('moving', num(m.operators.length)),
    chip('traffic', m.heatAvailable ? rate(t.bytesPerSec) : '—'),
  ].join('');
  const sel = selected ?? ScoresView.riskiest(m);
  phase('summary');
  servers.update(m, sel);
  phase('servers');
  placement.update(m);
  phase('placement');
  migrations.update(m);
  phase('migrations');
  events.update(m);
  phase('events');
  scores.update(m, sel);
  phase('scores');
  $('#updated').textContent = `revision ${num(m.revision)} · updated ${clock(m.at)}`;
}

function chip(label: string, value: string): string {
  return `<div class="stat" data-stat="${label}"><span>${label}</span><b>${value}</b></div>`;
}

/** Builds the model from a snapshot and redraws; returns the milliseconds it took. */
function ingest(s: Snapshot): number {
  const t0 = performance.now();
  phaseAt = t0;
  if (s.scores) history.add(s.scores);
  phase('history');
  last = buildModel(s);
  phase('model');
  render(last);
  return performance.now() - t0;
}

/** Milliseconds each step of the last update took (for the scale test and for profiling). */
const timings: Record<string, number> = {};
let phaseAt = 0;
function phase(name: string): void {
  const now = performance.now();
  timings[name] = now - phaseAt;
  phaseAt = now;
}

const source = new ApiSource();
let timer: number | undefined;
async function tick(): Promise<void> {
  try {
    const s = await source.poll();
    ingest(s);
    void seedHistories();
    window.presageDashboard.polls++;
    setConnection(true);
  } catch (err) {
    if (err instanceof UnauthorizedError) {
      // Polling stops until a token is given: a wrong one would only be refused again.
      askForToken(err.message);
      return;
    }
    setConnection(false, (err as Error).message);
  } finally {
    if (POLL_MS > 0) timer = window.setTimeout(tick, POLL_MS);
  }
}

/** Charted servers whose past has been asked of the orchestrator (once each). */
const seeded = new Set<string>();
async function seedHistories(): Promise<void> {
  if (!last || last.scoresState !== 'ok') return;
  const ids = last.rows.filter((r) => r.score).sort((a, b) => b.score!.score - a.score!.score).slice(0, 6).map((r) => r.id);
  const fresh = ids.filter((id) => !seeded.has(id));
  if (fresh.length === 0) return;
  fresh.forEach((id) => seeded.add(id));
  const got = await Promise.all(fresh.map((id) => source.scoreHistory(id)));
  fresh.forEach((id, i) => history.seed(id, got[i]));
  if (got.some((g) => g.length > 0) && last) render(last);
}

/** Shows the token form; a submitted token is kept in this browser and polling resumes. */
function askForToken(why: string): void {
  const form = $<HTMLFormElement>('#login');
  $('#login-why').textContent = token.get() ? `The orchestrator refused the token: ${why}` : 'This cluster requires a token.';
  form.hidden = false;
  const el = $('#live');
  el.className = 'live bad';
  el.textContent = 'token required';
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const value = $<HTMLInputElement>('#login-token').value;
    if (!value.trim()) return;
    token.set(value);
    form.hidden = true;
    void tick();
  };
}

function setConnection(ok: boolean, why = ''): void {
  const el = $('#live');
  el.className = ok ? 'live ok' : 'live bad';
  el.textContent = ok ? 'live' : 'orchestrator unreachable — retrying';
  el.title = why;
}

let resizeTimer: number | undefined;
window.addEventListener('resize', () => {
  clearTimeout(resizeTimer);
  resizeTimer = window.setTimeout(() => last && render(last), 150);
});

declare global {
  interface Window {
    presageDashboard: { ingest: (s: Snapshot) => number; model: () => DashboardModel | undefined; stop: () => void; polls: number; timings: Record<string, number> };
  }
}
window.presageDashboard = {
  ingest,
  model: () => last,
  stop: () => clearTimeout(timer),
  polls: 0,
  timings,
};
token.fromFragment();
if (POLL_MS > 0) void tick();
else setConnection(true);
