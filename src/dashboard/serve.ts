// Serves the operator dashboard from the orchestrator's HTTP server: the page at `/` (and
// `/dashboard/`), its script and stylesheet under `/dashboard/`. The script is bundled from
// the TypeScript in ./client with esbuild's API in memory, once, on the first request — so
// an orchestrator that nobody looks at pays nothing, and there are no built files to keep
// in sync with the sources.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

export interface DashboardAssets {
  html: string;
  js: string;
  css: string;
  /** Content hash, used to bust browser caches. */
  version: string;
}

let cached: Promise<DashboardAssets> | undefined;

/** Bundles the dashboard (cached for the life of the process; a failed build is retried). */
export function buildDashboard(): Promise<DashboardAssets> {
  cached ??= build().catch((err) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

async function build(): Promise<DashboardAssets> {
  // esbuild comes with tsx; loaded lazily so it is never touched unless the page is opened.
  const esbuild = await import('esbuild');
  const out = await esbuild.build({
    entryPoints: [path.join(HERE, 'client/main.ts')],
    bundle: true,
    write: false,
    format: 'iife',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
    absWorkingDir: HERE,
  });
  const js = out.outputFiles[0].text;
  const uplotCss = fs.readFileSync(require.resolve('uplot/dist/uPlot.min.css'), 'utf8');
  const css = `${uplotCss}\n${fs.readFileSync(path.join(HERE, 'style.css'), 'utf8')}`;
  const version = createHash('sha256').update(js).update(css).digest('hex').slice(0, 12);
  const html = fs.readFileSync(path.join(HERE, 'index.html'), 'utf8').replaceAll('%VERSION%', version);
  return { html, js, css, version };
}

/** Adds the dashboard's routes to a fastify app (the orchestrator's). */
export function registerDashboard(app: FastifyInstance): void {
  const send = async (reply: FastifyReply, pick: (a: DashboardAssets) => string, type: string, cache: string) => {
    try {
      const assets = await buildDashboard();
      return reply.header('content-type', type).header('cache-control', cache).send(pick(assets));
    } catch (err) {
      return reply.code(500).header('content-type', 'text/plain; charset=utf-8').send(`dashboard build failed: ${(err as Error).message}`);
    }
  };
  const page = (_req: unknown, reply: FastifyReply) => send(reply, (a) => a.html, 'text/html; charset=utf-8', 'no-cache');
  app.get('/', page);
  app.get('/dashboard', (_req, reply) => reply.redirect('/dashboard/'));
  app.get('/dashboard/', page);
  // Assets are named by content hash in the page, so they can be cached for long.
  app.get('/dashboard/app.js', (_req, reply) => send(reply, (a) => a.js, 'text/javascript; charset=utf-8', 'public, max-age=31536000, immutable'));
  app.get('/dashboard/app.css', (_req, reply) => send(reply, (a) => a.css, 'text/css; charset=utf-8', 'public, max-age=31536000, immutable'));
  app.get('/dashboard/*', (_req, reply) => reply.code(404).send({ error: 'no such dashboard asset' }));
}
