/**
 * HTTP ingest: `tributary serve` (its own process, embedded log with fsync durability, API key auth,
 * dedupe on event ids) under autocannon on loopback, side by side with Bento's `http_server` input and
 * `drop` output (nothing persisted) on the same payload and the same client settings.
 *
 * Two phases: single-event requests (200 connections), then 100-event batches (a JSON array; Bento splits
 * it with `unarchive: json_array`; 50 connections). In each, both servers run at once and the load takes
 * turns between them — three turns at peak each, alternating, then one at 80% of each one's peak rate
 * (autocannon's overallRate, latency corrected for coordinated omission) — so that a drift in the
 * machine's speed meets both alike (runs of one system after the other, hours apart, gave 0.55–0.94×
 * Bento's batch events/s on the same code). Then the log is opened and every event Tributary
 * acknowledged is looked for. On Linux, the CPU time each server process used in its peak turns (all its
 * threads, from /proc) is reported per event: on a shared machine, where events/s vary with the
 * neighbours' load, it is the steadier figure. The machine's free
 * memory is put in use once first (lib/memory.ts: on a VM that backs memory on first touch, the log's
 * page-cache writes would otherwise cost ten times what they do on a machine).
 *
 * Goals (issue 5): at least Bento's events/s; p99 under 50 ms at 80% of the peak rate.
 * Bento v1.17.0 is installed into ~/.cache/tributary/bento (`go install …`, or `go build` in a scratch module
 * where the proxy refuses what `go install` asks); when that fails, the error is
 * reported and only Tributary is measured. `npm run bench -- ingest [seconds per turn, default 10] [server.threads, default auto]`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import autocannon from 'autocannon';
import { loadProject } from '../src/core/project.ts';
import { EmbeddedLog } from '../src/log/embedded-log.ts';
import { openKeyStore } from '../src/server/start.ts';
import type { Benchmark } from './harness.ts';
import { touchFreeMemory } from './lib/memory.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const BENTO_VERSION = 'v1.17.0';
const BENTO_DIR = path.join(
  process.env.TRIBUTARY_CACHE_DIR ??
    path.join(process.env.XDG_CACHE_HOME ?? path.join(homedir(), '.cache'), 'tributary'),
  'bento',
);
const SINGLE_CONNECTIONS = 200;
const BATCH_CONNECTIONS = 50;
const BATCH = 100;

interface Target {
  readonly url: string;
  readonly headers: Record<string, string>;
}

interface Phase {
  readonly eventsPerSecond: number;
  readonly requestsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  readonly acknowledged: number;
  readonly errors: number;
}

/** Payloads with unique ids, built per request (so dedupe never drops one). */
function payloads(run: string, events: number): () => string {
  let sequence = 0;
  const event = (id: string) =>
    `{"id":"${id}","type":"page_view","user_id":"user-${sequence % 1000}","path":"/products/${sequence % 500}",` +
    `"referrer":"https://www.example.com/search?q=tributary","ts":"2026-11-23T10:00:00.000Z","amount":12.5}`;
  return () => {
    const base = `${run}-${sequence++}`;
    if (events === 1) return event(base);
    let body = '[';
    for (let i = 0; i < events; i++) body += (i ? ',' : '') + event(`${base}-${i}`);
    return `${body}]`;
  };
}

async function load(
  target: Target,
  options: { events: number; connections: number; seconds: number; rate?: number; run: string },
): Promise<Phase> {
  const make = payloads(options.run, options.events);
  const result = await autocannon({
    url: target.url,
    connections: options.connections,
    duration: options.seconds,
    ...(options.rate ? { overallRate: options.rate } : {}),
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...target.headers },
        setupRequest: (request) => ({ ...request, body: make() }),
      },
    ],
  });
  const acknowledged = result['2xx'];
  return {
    eventsPerSecond: Math.round((acknowledged * options.events) / result.duration),
    requestsPerSecond: Math.round(acknowledged / result.duration),
    p50: result.latency.p50,
    p99: result.latency.p99,
    acknowledged: acknowledged * options.events,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

const CLOCK_TICKS = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim()) || 100;

/** CPU time (user + system, all threads) a process has used, in µs; undefined where /proc is absent. */
function cpuMicros(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}`);
    try {
      await fetch(url, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
      return;
    } catch {
      await sleep(100);
    }
  }
  throw new Error(`${url} did not answer`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/**
 * The Bento binary, installed with `go install` when absent; or why it cannot be. Where the module proxy
 * refuses the version list `go install m@v` reads, it is built in a scratch module requiring that version.
 */
function bento(): { binary: string } | { error: string } {
  const binary = path.join(BENTO_DIR, 'bento');
  if (existsSync(binary)) return { binary };
  mkdirSync(BENTO_DIR, { recursive: true });
  const go = (args: string[], cwd?: string) =>
    spawnSync('go', args, {
      cwd,
      env: { ...process.env, GOBIN: BENTO_DIR },
      encoding: 'utf8',
      timeout: 30 * 60_000,
    });
  const module = `github.com/warpstreamlabs/bento`;
  let step = go(['install', `${module}/cmd/bento@${BENTO_VERSION}`]);
  if (step.status !== 0) {
    const scratch = mkdtempSync(path.join(tmpdir(), 'bento-build-'));
    try {
      for (const args of [
        ['mod', 'init', 'bento-build'],
        ['mod', 'edit', `-require=${module}@${BENTO_VERSION}`],
        ['build', '-mod=mod', '-o', binary, `${module}/cmd/bento`],
      ]) {
        step = go(args, scratch);
        if (step.status !== 0) break;
      }
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  if (step.status === 0 && existsSync(binary)) return { binary };
  const output = `${step.error?.message ?? ''}${step.stderr ?? ''}`.trim().split('\n').slice(-3).join(' ');
  return { error: `installing Bento ${BENTO_VERSION} with go failed: ${output}` };
}

async function startBento(
  binary: string,
  dir: string,
  split: boolean,
): Promise<{ child: ChildProcess; target: Target }> {
  const port = await freePort();
  const config = path.join(dir, split ? 'bento-batch.yaml' : 'bento-single.yaml');
  writeFileSync(
    config,
    [
      'http: {enabled: false}',
      'logger: {level: warn}',
      'input:',
      '  http_server:',
      `    address: 127.0.0.1:${port}`,
      '    path: /events',
      ...(split ? ['pipeline:', '  processors:', '    - unarchive: {format: json_array}'] : []),
      'output:',
      '  drop: {}',
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['-c', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const target = { url: `http://127.0.0.1:${port}/events`, headers: {} };
  await waitForHttp(target.url, child);
  return { child, target };
}

const PHASES = [
  ['single', 1, SINGLE_CONNECTIONS],
  ['batch', BATCH, BATCH_CONNECTIONS],
] as const;
/** Turns at peak each system takes in a phase, alternating with the other. */
const TURNS = 3;

/** A system under test in one phase: its server, and what its turns measured. */
interface Contender {
  readonly name: string;
  readonly child: ChildProcess;
  readonly target: Target;
  readonly figures: Record<string, number>;
  readonly turns: Phase[];
  cpu: number | undefined;
  acknowledged: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * One phase (single events or batches) of every system: all serve at once, and the load takes turns
 * between them — TURNS at peak each, alternating, then one at 80% of its own peak — so that a drift in
 * the machine's speed (a VM's neighbours) meets them alike rather than whichever ran in the slow minute.
 * Peak events/s are over all turns; p50 and p99 the median of the turns'.
 */
async function measurePhase(
  systems: ReadonlyArray<{
    name: string;
    start: (split: boolean) => Promise<{ child: ChildProcess; target: Target }>;
    figures: Record<string, number>;
  }>,
  seconds: number,
  phase: (typeof PHASES)[number],
): Promise<Map<string, number>> {
  const [label, events, connections] = phase;
  const contenders: Contender[] = [];
  try {
    for (const system of systems) {
      const { child, target } = await system.start(label === 'batch');
      contenders.push({ ...system, child, target, turns: [], cpu: 0, acknowledged: 0 });
    }
    const run = Date.now().toString(36);
    for (const c of contenders) {
      const warm = await load(c.target, {
        events,
        connections,
        seconds: 2,
        run: `${c.name}-${run}-warm-${label}`,
      });
      c.acknowledged += warm.acknowledged;
    }
    for (let turn = 0; turn < TURNS; turn++) {
      for (const c of contenders) {
        const before = cpuMicros(c.child.pid);
        const peak = await load(c.target, {
          events,
          connections,
          seconds,
          run: `${c.name}-${run}-${label}-${turn}`,
        });
        const after = cpuMicros(c.child.pid);
        c.cpu =
          before === undefined || after === undefined || c.cpu === undefined
            ? undefined
            : c.cpu + after - before;
        c.turns.push(peak);
        c.acknowledged += peak.acknowledged;
      }
    }
    for (const c of contenders) {
      const acknowledged = c.turns.reduce((n, t) => n + t.acknowledged, 0);
      const requestsPerSecond = c.turns.reduce((n, t) => n + t.requestsPerSecond, 0) / c.turns.length;
      const steady = await load(c.target, {
        events,
        connections,
        seconds,
        rate: Math.max(1, Math.floor(requestsPerSecond * 0.8)),
        run: `${c.name}-${run}-${label}-80`,
      });
      c.acknowledged += steady.acknowledged;
      const eventsPerSecond = Math.round(acknowledged / (TURNS * seconds));
      const cpuPerEvent =
        c.cpu !== undefined && acknowledged > 0 ? Math.round((c.cpu / acknowledged) * 10) / 10 : undefined;
      const p50 = median(c.turns.map((t) => t.p50));
      const p99 = median(c.turns.map((t) => t.p99));
      const errors = c.turns.reduce((n, t) => n + t.errors, 0) + steady.errors;
      console.log(
        `${c.name} ${label}: ${eventsPerSecond.toLocaleString('en-US')} events/s ` +
          `(turns: ${c.turns.map((t) => t.eventsPerSecond.toLocaleString('en-US')).join(', ')}), ` +
          `p50 ${p50} ms, p99 ${p99} ms; at 80%: p50 ${steady.p50} ms, p99 ${steady.p99} ms; errors ${errors}` +
          (cpuPerEvent === undefined ? '' : `; server CPU ${cpuPerEvent} µs/event`),
      );
      c.figures[`${label} events/s`] = eventsPerSecond;
      c.figures[`${label} p50 ms`] = p50;
      c.figures[`${label} p99 ms`] = p99;
      c.figures[`${label} p99 ms at 80%`] = steady.p99;
      if (cpuPerEvent !== undefined) c.figures[`${label} server CPU µs/event`] = cpuPerEvent;
    }
  } finally {
    for (const c of contenders) await stop(c.child);
  }
  return new Map(contenders.map((c) => [c.name, c.acknowledged]));
}

const benchmark: Benchmark = {
  name: 'ingest',
  description:
    'HTTP ingest on loopback (autocannon): single events (200 connections) and 100-event batches (50), at peak and at 80% of peak; Tributary serve (fsync, key auth, dedupe) vs Bento http_server → drop',
  async run(args) {
    const seconds = Number(args[0] ?? 10);
    // server.threads: the configuration's default unless given.
    const threads = args[1] === undefined ? 'auto' : Number(args[1]);
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-ingest-'));
    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      [
        'project: bench',
        'log: {backend: embedded, durability: fsync}',
        'logging: {level: warn, format: json}',
        'server:',
        '  port: 0',
        `  threads: ${threads}`,
        '  rate_limit: {per_key: {requests_per_second: 0}, per_ip: {requests_per_second: 0}}',
        '  max_pending_appends: 100000',
        'streams:',
        '  bench: {}',
        '',
      ].join('\n'),
    );
    const project = loadProject(dir);
    const keys = await openKeyStore(project);
    const { secret } = await keys.create({ name: 'bench', role: 'ingest', streams: ['bench'] });
    await keys.close();

    const startTributary = async () => {
      const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'tributary.js'), 'serve'], {
        cwd: dir,
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          const match = /listening on (http:\/\/\S+)/.exec(out);
          if (match) resolve(match[1]!);
        });
        child.once('exit', (code) => reject(new Error(`tributary serve exited with ${code}`)));
      });
      return {
        child,
        target: { url: `${url}/v1/streams/bench/events`, headers: { authorization: `Bearer ${secret}` } },
      };
    };
    const installed = bento();
    const touched = touchFreeMemory();
    if (touched) console.log(`touched ${touched.gib} GiB of free memory in ${touched.seconds} s`);
    const ours = { figures: {} as Record<string, number>, acknowledged: 0 };
    const theirs: Record<string, number> = {};
    const systems = [
      { name: 'tributary', start: startTributary, figures: ours.figures },
      ...('binary' in installed
        ? [
            {
              name: 'bento',
              start: (split: boolean) => startBento(installed.binary, dir, split),
              figures: theirs,
            },
          ]
        : []),
    ];
    for (const phase of PHASES)
      ours.acknowledged += (await measurePhase(systems, seconds, phase)).get('tributary') ?? 0;

    // Every acknowledged event must be in the log.
    const log = await EmbeddedLog.open({
      directory: path.join(dir, '.tributary', 'log'),
      retentionIntervalMs: 0,
    });
    const stored = (await log.offsets('events.bench')).reduce((n, o) => n + o.end - o.start, 0);
    await log.close();
    ours.figures['acknowledged events missing from the log'] = Math.max(0, ours.acknowledged - stored);
    console.log(
      `tributary: ${ours.acknowledged.toLocaleString('en-US')} events acknowledged, ${stored.toLocaleString('en-US')} in the log`,
    );

    let peer: { name: string; figures: Record<string, number> } | undefined;
    let note = '';
    if ('binary' in installed) {
      peer = { name: `Bento ${BENTO_VERSION} (http_server → drop, persists nothing)`, figures: theirs };
    } else {
      note = `; ${installed.error}`;
      console.log(installed.error);
    }
    rmSync(dir, { recursive: true, force: true });
    return {
      figures: ours.figures,
      ...(peer ? { peer } : {}),
      headline: 'batch events/s',
      notes:
        `${TURNS} alternating turns of ${seconds} s at peak per phase, after 2 s warm-up; 200-byte events with unique ids; Tributary: fsync log, API key, server.threads ${threads}, ` +
        `dedupe; both servers and autocannon on the same 2 cores` +
        `${touched ? `; ${touched.gib} GiB of free memory touched first` : ''}${note}`,
    };
  },
};
export default benchmark;
