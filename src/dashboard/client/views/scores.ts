// Failure Scores: every at-risk server's score over time (uPlot, thresholds at 50 and 70),
// and for the selected server its leading mode, mode probabilities, the features that drove
// it and its metric forecasts.

import uPlot from 'uplot';
import type { FailureScoreReport } from '../../../api/types.ts';
import { FAILURE_MODES } from '../../../api/types.ts';
import { alignHistories, type DashboardModel, type ScoreHistory } from '../model.ts';
import { clock, esc, num } from '../format.ts';

/** Time axis labels as HH:MM:SS (uPlot's default shows sub-second ticks on short spans). */
const timeAxis: uPlot.Axis = { stroke: '#5b6470', grid: { stroke: '#eef0f2' }, space: 70, incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400, 604800], values: (_u, ticks) => ticks.map((t) => clock(t * 1000)) };

export { WARN_SCORE as WARN, ACT_SCORE as CRIT } from '../../../prediction/failure-report.ts';
import { WARN_SCORE as WARN, ACT_SCORE as CRIT } from '../../../prediction/failure-report.ts';
const MAX_SERIES = 6;
const PALETTE = ['#2f6f8f', '#c0713a', '#6a5a9e', '#3f8a5a', '#a5475a', '#7a7f2a', '#4f6d9a'];

/** Draws dashed horizontal lines at the warning and critical thresholds. */
const thresholds: uPlot.Plugin = {
  hooks: {
    draw: [(u: uPlot) => {
      const g = u.ctx;
      g.save();
      g.setLineDash([6, 4]);
      g.lineWidth = devicePixelRatio;
      g.textAlign = 'right';
      g.textBaseline = 'bottom';
      for (const [v, color, label] of [[WARN, '#d49a2a', `warning ${WARN}`], [CRIT, '#c4473a', `critical ${CRIT}`]] as const) {
        const y = Math.round(u.valToPos(v, 'y', true));
        g.strokeStyle = color;
        g.beginPath();
        g.moveTo(u.bbox.left, y);
        g.lineTo(u.bbox.left + u.bbox.width, y);
        g.stroke();
        g.fillStyle = color;
        g.font = `${11 * devicePixelRatio}px system-ui, sans-serif`;
        g.fillText(label, u.bbox.left + u.bbox.width - 4 * devicePixelRatio, y - 3 * devicePixelRatio);
      }
      g.restore();
    }],
  },
};

export class ScoresView {
  private chart?: uPlot;
  private chartIds = '';
  private forecast?: uPlot;
  private forecastKey = '';
  private readonly chartEl: HTMLElement;
  private readonly detail: HTMLElement;
  private readonly empty: HTMLElement;
  private readonly forecastEl: HTMLElement;

  constructor(private readonly root: HTMLElement, private readonly history: ScoreHistory, private readonly onSelect: (id: string) => void) {
    root.innerHTML = `
      <p class="empty" data-testid="scores-empty" hidden></p>
      <div class="scores-body">
        <div class="score-chart" data-testid="score-chart"></div>
        <div class="score-detail" data-testid="score-detail"></div>
      </div>
      <div class="forecast-chart" data-testid="forecast-chart"></div>`;
    this.empty = root.querySelector('.empty')!;
    this.chartEl = root.querySelector('.score-chart')!;
    this.detail = root.querySelector('.score-detail')!;
    this.forecastEl = root.querySelector('.forecast-chart')!;
    this.detail.addEventListener('click', (ev) => {
      const id = (ev.target as HTMLElement).closest<HTMLElement>('[data-server]')?.dataset.server;
      if (id) this.onSelect(id);
    });
  }

  /** The server to show in detail when the user picked none: the riskiest. */
  static riskiest(m: DashboardModel): string | undefined {
    let best: FailureScoreReport | undefined;
    for (const r of m.rows) if (r.score && (!best || r.score.score > best.score)) best = r.score;
    return best?.serverId;
  }

  update(m: DashboardModel, selected?: string): void {
    const body = this.root.querySelector<HTMLElement>('.scores-body')!;
    if (m.scoresState !== 'ok') {
      this.empty.hidden = false;
      this.empty.textContent = m.scoresState === 'unavailable'
        ? 'No scores yet — the orchestrator does not serve Failure Scores (GET /v1/failure-scores).'
        : 'No scores yet — no server has reported a Failure Score.';
      body.hidden = true;
      this.forecastEl.hidden = true;
      return;
    }
    this.empty.hidden = true;
    body.hidden = false;
    this.forecastEl.hidden = false;

    const scored = m.rows.filter((r) => r.score).sort((a, b) => b.score!.score - a.score!.score);
    const ids = scored.slice(0, MAX_SERIES).map((r) => r.id);
    if (selected && !ids.includes(selected) && scored.some((r) => r.id === selected)) ids[ids.length - 1] = selected;
    this.drawHistory(ids);
    const rep = scored.find((r) => r.id === selected)?.score ?? scored[0]?.score;
    if (rep) this.showDetail(rep, scored.length);
    this.drawForecast(rep);
  }

  private drawHistory(ids: string[]): void {
    const data = alignHistories(this.history, ids) as uPlot.AlignedData;
    const width = Math.max(300, this.chartEl.clientWidth || 600);
    // The chart keeps one slot per rank (riskiest first) and is rebuilt only when the number
    // of series changes; when the ranking changes only the legend's labels are rewritten.
    const key = String(ids.length);
    if (!this.chart || key !== this.chartIds) {
      this.chart?.destroy();
      this.chartIds = key;
      this.chart = new uPlot({
        width,
        height: 220,
        plugins: [thresholds],
        scales: { y: { range: [0, 100] } },
        axes: [timeAxis, { stroke: '#5b6470', grid: { stroke: '#eef0f2' }, size: 36 }],
        legend: { live: false },
        series: [{}, ...ids.map((id, i) => ({ label: id, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true, points: { show: false } }))],
      }, data, this.chartEl);
    } else {
      if (Math.abs(this.chart.width - width) > 4) this.chart.setSize({ width, height: 220 });
      this.chart.setData(data);
    }
    const labels = this.chartEl.querySelectorAll<HTMLElement>('.u-legend .u-series .u-label');
    const skip = labels.length > ids.length ? 1 : 0; // the x series' row, when uPlot shows one
    ids.forEach((id, i) => {
      const el = labels[i + skip];
      if (el && el.textContent !== id) el.textContent = id;
      this.chart!.series[i + 1].label = id;
    });
  }

  private showDetail(r: FailureScoreReport, scoredCount: number): void {
    const probs = FAILURE_MODES.map((mode) => {
      const p = r.probabilities?.[mode] ?? 0;
      return `<div class="prob${mode === r.mode ? ' lead' : ''}"><span>${esc(mode)}</span><span class="bar"><i style="width:${Math.max(1, 100 * p)}%"></i></span><span class="num">${num(100 * p, 1)}%</span><span class="muted">${esc(r.horizons?.[mode] ?? '')}</span></div>`;
    }).join('');
    const maxC = Math.max(1e-9, ...r.topFeatures.map((f) => Math.abs(f.contribution)));
    const feats = r.topFeatures.slice(0, 6).map((f) => `<div class="feat"><span class="mono">${esc(f.name)}</span><span class="bar"><i style="width:${Math.max(2, (100 * Math.abs(f.contribution)) / maxC)}%"></i></span><span class="num muted">${num(f.value, 2)}</span></div>`).join('');
    this.detail.innerHTML = `
      <div class="score-big lvl-${r.level}" data-server-score="${esc(r.serverId)}"><b>${num(r.score)}</b><span>${esc(r.level)}</span></div>
      <div class="mono">${esc(r.serverId)}</div>
      <div>leading mode <b data-testid="leading-mode">${esc(r.mode)}</b></div>
      <div class="muted">model ${esc(r.modelVersion)} · ${scoredCount} servers scored</div>
      ${r.note ? `<div class="note">${esc(r.note)}</div>` : ''}
      <h4>Mode probabilities</h4>${probs}
      <h4>Top features</h4><div data-testid="top-features">${feats || '<span class="muted">none</span>'}</div>`;
  }

  private drawForecast(r: FailureScoreReport | undefined): void {
    const f = r?.forecast?.find((x) => x.points.length > 0);
    if (!r || !f) {
      this.forecast?.destroy();
      this.forecast = undefined;
      this.forecastKey = '';
      this.forecastEl.innerHTML = '<p class="empty">No forecast for this server.</p>';
      return;
    }
    const hasBand = f.points.some((p) => p.lower !== undefined && p.upper !== undefined);
    const data: uPlot.AlignedData = [
      f.points.map((p) => p.t / 1000),
      f.points.map((p) => p.value),
      ...(hasBand ? [f.points.map((p) => p.lower ?? null), f.points.map((p) => p.upper ?? null)] : []),
    ];
    const key = `${r.serverId}|${f.metric}|${f.model}|${hasBand}`;
    const width = Math.max(300, this.forecastEl.clientWidth || 600);
    if (this.forecast && key === this.forecastKey) {
      this.forecast.setData(data);
      return;
    }
    this.forecast?.destroy();
    this.forecastEl.innerHTML = '';
    this.forecastKey = key;
    const title = `${r.serverId}: forecast of ${f.metric} (${f.model})`;
    this.forecast = new uPlot({
      title,
      width,
      height: 170,
      axes: [timeAxis, { stroke: '#5b6470', grid: { stroke: '#eef0f2' }, size: 48 }],
      legend: { live: false },
      series: [
        {},
        { label: f.metric, stroke: '#2f6f8f', width: 2, points: { show: false } },
        ...(hasBand ? [
          { label: 'lower', stroke: '#9cc3d5', dash: [4, 4], points: { show: false } },
          { label: 'upper', stroke: '#9cc3d5', dash: [4, 4], points: { show: false } },
        ] : []),
      ],
      bands: hasBand ? [{ series: [3, 2], fill: 'rgba(47,111,143,0.10)' }] : [],
    }, data, this.forecastEl);
  }
}
