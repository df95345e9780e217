/**
 * The scheduler of `tributary up`: a triggered model that fails is retried with backoff, every attempt is
 * in the run history, and the alert reaches a webhook (a node:http server on 127.0.0.1); a good model runs
 * when its upstream commits; a job past its SLA alerts.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { Registry } from 'prom-client';
import { parseTableIdentifier } from '../../src/catalog/identifier.ts';
import { loadModels } from '../../src/query/models/project.ts';
import { openRunHistory, runJobNow, startScheduler } from '../../src/query/scheduler/scheduler.ts';
import { TableViews } from '../../src/query/table-views.ts';
import { openTestLakehouse, type TestLakehouse } from '../../src/query/testing.ts';

function write(root: string, file: string, text: string): void {
  const full = path.join(root, file);
  mkdirSync(path.dirname(full), { recursive: true });
  writeFileSync(full, text);
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = 20_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe('scheduler', () => {
  let lake: TestLakehouse;
  let server: http.Server;
  let webhookUrl: string;
  const received: Array<{ text: string }> = [];
  const project = () => ({
    root: path.join(lake.dir, 'project'),
    platform: {
      project: 'shop',
      warehouse: path.join(lake.dir, 'warehouse'),
      catalog: { name: 'tributary', uri: `sqlite:${path.join(lake.dir, 'catalog.db')}` },
    },
  });

  before(async () => {
    lake = await openTestLakehouse('tributary-scheduler-');
    server = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => (body += chunk.toString()));
      request.on('end', () => {
        received.push(JSON.parse(body) as { text: string });
        response.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    webhookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    await lake.createFromSql('bronze.events', `select i::bigint as id, i % 3 as kind from range(10) r(i)`);
    const root = project().root;
    write(
      root,
      'models/schedule.yaml',
      `concurrency: 2
alerts:
  webhook: \${HOOK_URL}
defaults:
  retries: 2
  backoff: 50ms
  max_backoff: 200ms
trigger_poll: 100ms
jobs:
  - name: expire-bronze
    kind: expire
    tables: [bronze.*]
    schedule: "0 3 * * *"
    older_than: 1s
    retain_last: 1
  - name: orphans-bronze
    kind: remove-orphan-files
    tables: [bronze.*]
    schedule: "0 4 * * *"
    older_than: 1d
`,
    );
    write(
      root,
      'models/gold/broken.sql',
      `/* after: [bronze.events] */\nselect id, error('boom ' || id) as x from ref('bronze.events')\n`,
    );
    write(
      root,
      'models/gold/kinds.sql',
      `/* after: [bronze.events] */\nselect kind, count(*) as n from ref('bronze.events') group by kind\n`,
    );
    write(
      root,
      'models/gold/slow.sql',
      `/* ---\nschedule: "0 0 1 1 *"\nsla: 50ms\nretries: 0\n--- */\nselect count(*) as n from range(60000000) r(i) where i % 7 = 1\n`,
    );
  });
  after(async () => {
    lake.close();
    await new Promise((resolve) => server.close(resolve));
  });

  it('retries a failing triggered model, records each attempt and alerts the webhook', async () => {
    const models = loadModels(project().root, { env: { HOOK_URL: webhookUrl } });
    const metrics = new Registry();
    const scheduler = await startScheduler(project(), { catalog: lake.catalog, models, metrics, tickMs: 20 });
    try {
      const alert = await until('the failure alert', () =>
        received.find((r) => r.text.includes('model:gold.broken')),
      );
      assert.match(alert.text, /\[shop\].*job model:gold\.broken failed.*3 attempts.*boom/);
      await until('gold.kinds to be built', () =>
        lake.catalog.tableExists({ namespace: ['gold'], name: 'kinds' }),
      );
      const status = scheduler.status();
      assert.equal(status.concurrency, 2);
      assert.deepEqual(
        status.jobs.map((j) => j.name),
        ['expire-bronze', 'model:gold.broken', 'model:gold.kinds', 'model:gold.slow', 'orphans-bronze'],
      );
      assert.match(status.jobs[0]!.nextRunAt ?? '', /T03:00:00/);
      await until('the last attempt to be recorded', () =>
        scheduler.status().jobs.find((j) => j.name === 'model:gold.broken')?.state === 'idle'
          ? true
          : undefined,
      );
      const text = await metrics.metrics();
      assert.match(text, /tributary_job_runs_total\{job="model:gold.broken",status="failed"\} 3/);
    } finally {
      await scheduler.stop();
    }
    const { history, driver } = await openRunHistory(project());
    try {
      const attempts = await history.list({ job: 'model:gold.broken' });
      assert.equal(attempts.length, 3);
      assert.deepEqual(attempts.map((a) => a.attempt).sort(), [1, 2, 3]);
      assert.ok(attempts.every((a) => a.status === 'failed' && /boom/.test(a.error ?? '')));
      assert.equal(new Set(attempts.map((a) => a.group)).size, 1);
      assert.deepEqual(attempts.map((a) => a.trigger).sort(), ['after', 'retry', 'retry']);
      const kinds = await history.list({ job: 'model:gold.kinds' });
      assert.equal(kinds[0]?.status, 'succeeded');
    } finally {
      await driver.close();
    }
  });

  it('runs a job on demand, alerts an SLA miss, and runs maintenance', async () => {
    const models = loadModels(project().root, { env: { HOOK_URL: webhookUrl } });
    const slow = await runJobNow(project(), 'slow', { catalog: lake.catalog, models });
    assert.equal(slow.status, 'succeeded');
    assert.equal(slow.slaMissed, true);
    await until('the SLA alert', () => received.find((r) => /model:gold\.slow missed its SLA/.test(r.text)));
    await lake.appendSql('bronze.events', `select 100::bigint as id, 1 as kind`);
    await sleep(1100);
    const expire = await runJobNow(project(), 'expire-bronze', { catalog: lake.catalog, models });
    assert.equal(expire.status, 'succeeded');
    assert.deepEqual(expire.detail, {
      tables: [{ table: 'bronze.events', expiredSnapshots: 1, deletedFiles: 1 }],
    });
    // A file a failed write left two days ago, and one a write in progress has: only the first goes.
    const table = await lake.catalog.loadTable({ namespace: ['bronze'], name: 'events' });
    const folder = table.storage.localPath(table.location)!;
    const left = path.join(folder, 'data', 'left-by-a-failed-write.parquet');
    const young = path.join(folder, 'data', 'being-written.parquet');
    writeFileSync(left, 'x');
    writeFileSync(young, 'x');
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    utimesSync(left, twoDaysAgo, twoDaysAgo);
    const orphans = await runJobNow(project(), 'orphans-bronze', { catalog: lake.catalog, models });
    assert.equal(orphans.status, 'succeeded');
    assert.deepEqual(orphans.detail, { tables: [{ table: 'bronze.events', deletedFiles: 1 }] });
    assert.ok(!existsSync(left));
    assert.ok(existsSync(young));
    const exposed = await new TableViews(lake.catalog, lake.engine.connection).current(
      parseTableIdentifier('bronze.events'),
    );
    const counted = await lake.engine.connection.runAndReadAll(`select count(*)::int from ${exposed.view}`);
    assert.equal(counted.getRows()[0]?.[0], 11, 'every row is still there');
  });
});

describe('scheduler, an upstream commit during a run', () => {
  let lake: TestLakehouse;
  before(async () => {
    lake = await openTestLakehouse('tributary-scheduler-during-');
    await lake.createFromSql('bronze.events', `select i::bigint as id from range(10) r(i)`);
  });
  after(() => lake.close());

  it('runs the job once more after, for what committed while it ran', async () => {
    const root = path.join(lake.dir, 'project');
    write(root, 'models/schedule.yaml', `trigger_poll: 50ms\ndefaults: { retries: 0 }\n`);
    write(
      root,
      'models/gold/n.sql',
      `/* ---\nafter: [bronze.events]\ntests:\n  - freshness: { max_age: 1h }\n--- */\nselect count(*) as n from ref('bronze.events')\n`,
    );
    const project = {
      root,
      platform: {
        warehouse: path.join(lake.dir, 'warehouse'),
        catalog: { name: 'tributary', uri: `sqlite:${path.join(lake.dir, 'catalog.db')}` },
      },
    };
    // The job is held once its model committed (its freshness test loads gold.n) until released: a commit
    // upstream lands meanwhile, after the model read its input.
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    let once = false;
    const real = lake.catalog;
    const catalog = new Proxy(real, {
      get(target, property) {
        if (property === 'loadTable')
          return async (identifier: Parameters<typeof real.loadTable>[0]) => {
            const table = await real.loadTable(identifier);
            if (!once && identifier.name === 'n' && table.currentSnapshot) {
              once = true;
              holding();
              await released;
            }
            return table;
          };
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function'
          ? ((value as (...args: unknown[]) => unknown).bind(target) as unknown)
          : value;
      },
    });
    const scheduler = await startScheduler(project, { catalog, models: loadModels(root), tickMs: 20 });
    const count = async () => {
      const exposed = await new TableViews(real, lake.engine.connection).current(
        parseTableIdentifier('gold.n'),
      );
      return Number(
        (await lake.engine.connection.runAndReadAll(`select n from ${exposed.view}`)).getRows()[0]?.[0],
      );
    };
    try {
      await held;
      await lake.appendSql('bronze.events', `select (10 + i)::bigint as id from range(5) r(i)`);
      await sleep(300); // trigger polls see the commit while the job runs
      release();
      await until('gold.n to count the rows committed during the run', async () =>
        (await count()) === 15 ? true : undefined,
      );
    } finally {
      await scheduler.stop();
    }
  });
});
