/**
 * PostgreSQL CDC end to end (issue 6): a private PostgreSQL (the test harness's definition) loaded by
 * `pgbench -i`, then
 *  1. the initial snapshot of pgbench_accounts through `tributary cdc run` into the log (rows/s), and
 *     through a pipeline into an Iceberg upsert table (rows/s);
 *  2. pgbench's TPC-B-like workload (4 row changes per transaction; pgbench_history given a primary key)
 *     while the source and the pipeline run as they would in production (`cdc run`, `run`): row changes
 *     per second into the log and into the Iceberg upsert table, and the end-to-end lag — from the commit
 *     in PostgreSQL to the Iceberg commit holding the change — sampled at every pipeline commit (p50, p99);
 *  3. capacity, apart from what PostgreSQL and pgbench take: pgbench runs with the source and pipeline
 *     stopped, then the source drains the slot's backlog into the log, then the pipeline into Iceberg.
 * Goals: ≥ 50k changes/s with lag p99 < 2 s; ≥ 200k snapshot rows/s.
 * `npm run bench -- cdc [scale=10] [seconds=30] [clients=8] [rows per transaction] [changes/s]` (seconds 0: only the
 * snapshot, step 1). With rows per transaction N, steps 2 and 3 run a pgbench script instead of TPC-B: each
 * transaction updates N consecutive pgbench_accounts rows (N changes) — pgbench on 2 shared cores offers
 * about 16k TPC-B changes/s, too few to load the pipeline at the goal's 50k/s; a 5th argument R throttles
 * step 2 to R changes/s (`cdc 10 30 8 50 50000`: the goal's load, and its lag);
 * CDC_BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") is passed to the `cdc run` and `run`
 * processes, to profile them;
 * CDC_BENCH_LOGS=<dir> keeps their output there (JSON log lines: commits, snapshot progress).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { EmbeddedLog } from '../src/log/embedded-log.ts';
import { postgres } from '../test/services/postgres.ts';
import type { Benchmark, BenchResult } from './harness.ts';

const CLI = path.resolve(import.meta.dirname, '..', 'bin', 'tributary.js');
const NODE_ARGS = (process.env.CDC_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function exec(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(' ')}: ${code}\n${out}`)),
    );
  });
}

class Child {
  readonly process: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;
  readonly args: readonly string[];
  constructor(root: string, args: readonly string[]) {
    this.args = args;
    this.process = spawn(process.execPath, [...NODE_ARGS, CLI, ...args], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.process.stdout!.on('data', (c: Buffer) => (this.output += c.toString()));
    this.process.stderr!.on('data', (c: Buffer) => (this.output += c.toString()));
    this.exited = new Promise((resolve) => this.process.once('exit', resolve));
  }
  /** The JSON log lines whose message matches. */
  entries(pattern: RegExp): Array<{ time: number; msg: string } & Record<string, unknown>> {
    return this.output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { time: number; msg: string } & Record<string, unknown>)
      .filter((entry) => pattern.test(entry.msg));
  }
  /** Times (ms) of the JSON log lines whose message matches. */
  times(pattern: RegExp): number[] {
    return this.entries(pattern).map((entry) => entry.time);
  }
  async stop(): Promise<void> {
    this.process.kill('SIGTERM');
    await this.exited;
  }
}

async function until(
  what: string,
  probe: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 50,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
}

const benchmark: Benchmark = {
  name: 'cdc',
  description:
    'PostgreSQL CDC: snapshot rows/s, then pgbench TPC-B changes/s into an Iceberg upsert table with lag p50/p99',
  async run(args): Promise<BenchResult> {
    const scale = Number(args[0] ?? 10);
    const seconds = Number(args[1] ?? 30);
    const clients = Number(args[2] ?? 8);
    const rowsPerTransaction = args[3] === undefined ? undefined : Number(args[3]);
    // Step 2 offers this many changes/s (pgbench --rate), when given; step 3 is never throttled.
    const offered = args[4] === undefined ? undefined : Number(args[4]);
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-cdc-'));
    chmodSync(dir, 0o755);
    mkdirSync(path.join(dir, 'pg'));
    const pg = await postgres.start(path.join(dir, 'pg'));
    const env = { ...process.env, PGPASSWORD: pg.password };
    const pgArgs = ['-h', pg.host, '-p', String(pg.port), '-U', pg.user];
    const children: Child[] = [];
    try {
      await exec(
        path.join(pg.binDir, 'pgbench'),
        [...pgArgs, '-i', '-q', '-s', String(scale), pg.database],
        env,
      );
      await exec(
        path.join(pg.binDir, 'psql'),
        [
          ...pgArgs,
          '-d',
          pg.database,
          '-qc',
          'alter table pgbench_history add column hid bigserial primary key; analyze',
        ],
        env,
      );
      const rows = scale * 100_000;
      // The workload of steps 2 and 3: TPC-B (4 changes per transaction), or N-row updates.
      const workload: string[] = [];
      const changesPerTransaction = rowsPerTransaction ?? 4;
      if (rowsPerTransaction !== undefined) {
        const script = path.join(dir, 'updates.sql');
        writeFileSync(
          script,
          `\\set aid random(1, ${rows - rowsPerTransaction + 1})\n` +
            `update pgbench_accounts set abalance = abalance + 1 where aid between :aid and :aid + ${rowsPerTransaction - 1};\n`,
        );
        workload.push('-f', script);
      }
      const root = path.join(dir, 'project');
      mkdirSync(path.join(root, 'sources'), { recursive: true });
      mkdirSync(path.join(root, 'pipelines'));
      writeFileSync(
        path.join(root, 'tributary.yaml'),
        'project: bench\nlog:\n  backend: embedded\n  partitions: 4\nlogging:\n  level: info\n  format: json\n',
      );
      writeFileSync(
        path.join(root, 'sources', 'bank.yaml'),
        [
          'type: postgres_cdc',
          `host: ${pg.host}`,
          `port: ${pg.port}`,
          `database: ${pg.database}`,
          `user: ${pg.user}`,
          `password: ${pg.password}`,
          'sslmode: disable',
          'tables: [public.pgbench_accounts, public.pgbench_branches, public.pgbench_tellers, public.pgbench_history]',
          'snapshot: {chunk_size: 50000}',
          'max_batch_records: 20000',
          'acknowledge: {interval: 500ms}',
          '',
        ].join('\n'),
      );
      writeFileSync(
        path.join(root, 'pipelines', 'accounts.yaml'),
        [
          'source: {type: topic, topic: cdc.bank}',
          'transforms: [{type: cdc, tables: [public.pgbench_accounts]}]',
          'sinks: [{type: iceberg, table: silver.accounts, mode: upsert, key: [aid], schema: accounts.json}]',
          'batch: {max_records: 100000, interval: 500ms}',
          '',
        ].join('\n'),
      );
      writeFileSync(
        path.join(root, 'accounts.json'),
        JSON.stringify({
          fields: [
            { name: 'aid', type: 'int', required: true },
            { name: 'bid', type: 'int' },
            { name: 'abalance', type: 'int' },
            { name: 'filler', type: 'string' },
            { name: '_deleted', type: 'boolean' },
          ],
          'identifier-fields': ['aid'],
        }),
      );

      // 1. The snapshot, into the log, then into Iceberg.
      const source = new Child(root, ['cdc', 'run', 'bank']);
      children.push(source);
      await until(
        'the snapshot',
        () => source.times(/snapshot of public\.pgbench_accounts finished/).length > 0,
        30 * 60_000,
        200,
      );
      const [snapshotStart] = source.times(/snapshot of public\.pgbench_accounts started/);
      const [snapshotEnd] = source.times(/snapshot of public\.pgbench_accounts finished/);
      const snapshotRowsPerSecond = rows / ((snapshotEnd! - snapshotStart!) / 1000);
      await until(
        'all snapshots',
        () => source.times(/snapshot of public\.pgbench_history finished/).length > 0,
        60_000,
        200,
      );

      const logFile = path.join(root, '.tributary', 'log', 'log.db');
      const db = new DatabaseSync(logFile, { readOnly: true });
      const ends = () =>
        db
          .prepare(
            `select p.partition, p.next_offset as n from partitions p join topics t on t.id = p.topic_id where t.name = 'cdc.bank' order by 1`,
          )
          .all()
          .map((r) => Number(r.n));
      const committed = () => {
        const rowsOf = db
          .prepare(
            `select g.partition, g.offset as o from group_offsets g join topics t on t.id = g.topic_id where t.name = 'cdc.bank' and g.group_name = 'pipeline/accounts' order by 1`,
          )
          .all();
        const out = ends().map(() => 0);
        for (const r of rowsOf) out[Number(r.partition)] = Number(r.o);
        return out;
      };
      const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
      const pipelineStart = Date.now();
      const pipeline = new Child(root, ['run', 'accounts']);
      children.push(pipeline);
      const snapshotRecords = sum(ends());
      await until(
        'the pipeline to drain the snapshot',
        () => sum(committed()) >= snapshotRecords,
        30 * 60_000,
        100,
      );
      const snapshotIcebergRowsPerSecond = rows / ((Date.now() - pipelineStart) / 1000);
      const snapshotFigures = {
        'snapshot rows': rows,
        'snapshot rows/s (to log)': Math.round(snapshotRowsPerSecond),
        'snapshot rows/s (to Iceberg upsert)': Math.round(snapshotIcebergRowsPerSecond),
      };
      if (seconds === 0) {
        db.close();
        return {
          figures: snapshotFigures,
          notes: `pgbench -s ${scale}, snapshot only; cdc run and run as separate processes, PostgreSQL on the same 2 cores (fsync off); log fsync on`,
        };
      }

      // 2. pgbench while the source and the pipeline run; lag sampled at each pipeline commit.
      const log = await EmbeddedLog.open({
        directory: path.join(root, '.tributary', 'log'),
        retentionIntervalMs: 0,
      });
      const lags: number[] = [];
      let sampling = true;
      let last = committed();
      const sampler = (async () => {
        while (sampling) {
          await sleep(50);
          const now = committed();
          if (sum(now) === sum(last)) continue;
          const at = Date.now();
          let newest = 0;
          for (let p = 0; p < now.length; p++) {
            if (now[p]! <= last[p]!) continue;
            const [record] = await log.read('cdc.bank', p, now[p]! - 1, { maxRecords: 1 });
            if (!record) continue;
            const value = JSON.parse(new TextDecoder().decode(record.value)) as { commit_time: string };
            newest = Math.max(newest, Date.parse(value.commit_time));
          }
          if (newest) lags.push((at - newest) / 1000);
          last = now;
        }
      })();
      // The first leg alone: from the commit in PostgreSQL to the record in the log.
      const sourceLags: number[] = [];
      let lastEnds = ends();
      const sourceSampler = (async () => {
        while (sampling) {
          await sleep(50);
          const now = ends();
          const at = Date.now();
          let newest = 0;
          for (let p = 0; p < now.length; p++) {
            if (now[p]! <= lastEnds[p]!) continue;
            const [record] = await log.read('cdc.bank', p, now[p]! - 1, { maxRecords: 1 });
            if (!record) continue;
            const value = JSON.parse(new TextDecoder().decode(record.value)) as { commit_time: string };
            newest = Math.max(newest, Date.parse(value.commit_time));
          }
          if (newest) sourceLags.push((at - newest) / 1000);
          lastEnds = now;
        }
      })();
      const before = sum(ends());
      const started = Date.now();
      const rate = offered === undefined ? [] : ['-R', String(offered / changesPerTransaction)];
      const out = await exec(
        path.join(pg.binDir, 'pgbench'),
        [
          ...pgArgs,
          '-n',
          ...workload,
          ...rate,
          '-c',
          String(clients),
          '-j',
          '2',
          '-T',
          String(seconds),
          pg.database,
        ],
        env,
      );
      const pgbenchSeconds = (Date.now() - started) / 1000;
      const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? NaN);
      const txns = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1] ?? NaN);
      const changes = txns * changesPerTransaction;
      await until('the source to catch up', () => sum(ends()) - before >= changes, 10 * 60_000, 100);
      const sourceSeconds = (Date.now() - started) / 1000;
      await until('the pipeline to catch up', () => sum(committed()) >= sum(ends()), 10 * 60_000, 100);
      const endToEndSeconds = (Date.now() - started) / 1000;
      sampling = false;
      await sampler;
      await sourceSampler;

      // 3. A backlog in the slot, drained by the source, then by the pipeline.
      await source.stop();
      await pipeline.stop();
      const backlogOut = await exec(
        path.join(pg.binDir, 'pgbench'),
        [...pgArgs, '-n', ...workload, '-c', String(clients), '-j', '2', '-T', String(seconds), pg.database],
        env,
      );
      const backlog =
        changesPerTransaction *
        Number(/number of transactions actually processed: (\d+)/.exec(backlogOut)?.[1] ?? NaN);
      const logBefore = sum(ends());
      const drainStart = Date.now();
      const drainer = new Child(root, ['cdc', 'run', 'bank']);
      children.push(drainer);
      await until(
        'the source to drain the backlog',
        () => sum(ends()) - logBefore >= backlog,
        30 * 60_000,
        50,
      );
      const drainSeconds = (Date.now() - drainStart) / 1000;
      const icebergStart = Date.now();
      const catchUp = new Child(root, ['run', 'accounts']);
      children.push(catchUp);
      await until(
        'the pipeline to drain the backlog',
        () => sum(committed()) >= sum(ends()),
        30 * 60_000,
        50,
      );
      const icebergEnd = Date.now();
      const icebergSeconds = (icebergEnd - icebergStart) / 1000;
      // A restarted pipeline first replays what its DLQ has not committed (catch-up batches).
      const replays = catchUp.entries(/pipeline accounts committed/).filter((e) => e.catchUp === true);
      const replayed = replays.reduce((n, e) => n + Number(e.records ?? 0), 0);
      const replayEnd = replays.length ? replays[replays.length - 1]!.time : icebergStart;
      await log.close();
      db.close();
      return {
        figures: {
          ...snapshotFigures,
          'pgbench tps': Math.round(tps),
          changes,
          'changes/s offered': Math.round(changes / pgbenchSeconds),
          'changes/s (to log)': Math.round(changes / sourceSeconds),
          'changes/s (to Iceberg upsert)': Math.round(changes / endToEndSeconds),
          'lag p50 s': percentile(lags, 50),
          'lag p99 s': percentile(lags, 99),
          'lag max s': Math.max(...lags),
          'backlog changes': backlog,
          'backlog changes/s (to log)': Math.round(backlog / drainSeconds),
          'backlog changes/s (to Iceberg upsert)': Math.round(backlog / icebergSeconds),
          'records replayed on restart': replayed,
          'backlog changes/s (to Iceberg upsert, after the replay)': Math.round(
            backlog / ((icebergEnd - replayEnd) / 1000),
          ),
          'source lag p99 s': percentile(sourceLags, 99),
        },
        notes: `pgbench -s ${scale}, ${clients} clients, ${seconds} s, ${rowsPerTransaction === undefined ? 'TPC-B, 4 changes per transaction' : `${rowsPerTransaction}-row updates of pgbench_accounts per transaction`}${offered === undefined ? '' : `, ${offered} changes/s offered (pgbench --rate)`}; cdc run and run as separate processes, PostgreSQL on the same 2 cores (fsync off); log fsync on`,
      };
    } finally {
      for (const child of children) await child.stop().catch(() => undefined);
      const logs = process.env.CDC_BENCH_LOGS;
      if (logs) {
        mkdirSync(logs, { recursive: true });
        children.forEach((child, i) =>
          writeFileSync(path.join(logs, `${i}-${child.args.join('-')}.log`), child.output),
        );
      }
      await postgres.stop(pg, path.join(dir, 'pg')).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
export default benchmark;
