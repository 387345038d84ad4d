// The failure modes and the Failure Score report: what a server's scorer produces and serves at
// GET /v1/failure-score. Defined here, where they are produced, so that prediction depends on no
// higher layer; api/types.ts re-exports them as part of the wire contract.

/**
 * The two score levels, declared once: at ACT_SCORE a server is drained (the orchestrator's
 * default --drain-threshold), at WARN_SCORE it is a warning (--warning-threshold; placement avoids
 * it, a drained server takes data again only below it). Model anchors map probabilities onto them.
 */
export const ACT_SCORE = 70;
export const WARN_SCORE = 50;

export const FAILURE_MODES = ['disk', 'fail-slow', 'network', 'software'] as const;
export type FailureMode = (typeof FAILURE_MODES)[number];

/** A server's Failure Score as served by `GET /v1/failure-score` (server) and the orchestrator. */
export interface FailureScoreReport {
  serverId: string;
  /** 0 healthy … 100 critical. */
  score: number;
  level: 'healthy' | 'warning' | 'critical';
  /** The failure mode that drives the score. */
  mode: FailureMode;
  /** Calibrated probability of failing within the mode's horizon. */
  probabilities: Record<FailureMode, number>;
  /** Each mode's horizon, e.g. { disk: '7d', 'fail-slow': '1h', … }. */
  horizons: Record<FailureMode, string>;
  /** The features that drove the leading mode, largest contribution first. */
  topFeatures: { name: string; value: number; contribution: number }[];
  modelVersion: string;
  /** ISO time of the computation. */
  computedAt: string;
  /** Forecasts of key metrics (ms timestamps), for the dashboard. */
  forecast: { metric: string; model: string; points: { t: number; value: number; lower?: number; upper?: number }[] }[];
  /** Set when the score could not be computed from models (e.g. not enough telemetry yet). */
  note?: string;
  /** Modes that had no input telemetry this time (their probability is the prior): no evidence either way. */
  noData?: FailureMode[];
}
