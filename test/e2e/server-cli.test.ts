/**
 * The server through the CLI: `keys create | list | revoke`, `serve`, `up` running the server with the
 * pipelines (events posted over HTTP reach an Iceberg table; /metrics shows both), `doctor`'s server checks.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { startCli, tributary } from '../cli.ts';

function project(yaml: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tributary-server-cli-'));
  writeFileSync(path.join(dir, 'tributary.yaml'), yaml);
  return dir;
}

describe('tributary keys, serve and up', () => {
  it('creates a key shown once, lists it without the secret, revokes it', async () => {
    const dir = project('streams:\n  clicks: {}\n');
    const created = await tributary(['keys', 'create', '--stream', 'clicks', '--name', 'web shop'], {
      cwd: dir,
    });
    assert.equal(created.code, 0, created.stderr);
    const secret = /trk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}/.exec(created.stdout)?.[0];
    assert.ok(secret, created.stdout);
    assert.match(created.stdout, /cannot show it again/);
    const list = await tributary(['keys', 'list'], { cwd: dir });
    assert.match(list.stdout, /web shop\s+ingest\s+clicks/);
    assert.ok(!list.stdout.includes(secret.slice(17)), 'no secret in the list');
    const unknown = await tributary(['keys', 'create', '--stream', 'nope', '--name', 'x'], { cwd: dir });
    assert.equal(unknown.code, 0);
    assert.match(unknown.stderr, /no stream named nope/);
    const duplicate = await tributary(['keys', 'create', '--stream', 'clicks', '--name', 'web shop'], {
      cwd: dir,
    });
    assert.equal(duplicate.code, 2);
    assert.match(duplicate.stderr, /already exists/);
    const badRole = await tributary(
      ['keys', 'create', '--stream', 'clicks', '--name', 'y', '--role', 'root'],
      { cwd: dir },
    );
    assert.equal(badRole.code, 2);
    const ungranted = await tributary(['keys', 'create', '--name', 'bi', '--role', 'query'], { cwd: dir });
    assert.equal(ungranted.code, 2);
    assert.match(ungranted.stderr, /a query key needs the tables it may read/);
    const granted = await tributary(
      ['keys', 'create', '--name', 'bi', '--role', 'query', '--table', 'gold.*,silver.orders'],
      { cwd: dir },
    );
    assert.equal(granted.code, 0, granted.stderr);
    assert.match(granted.stdout, /role query, tables gold\.\*, silver\.orders/);
    assert.match(
      (await tributary(['keys', 'list'], { cwd: dir })).stdout,
      /bi\s+query\s+gold\.\*,silver\.orders/,
    );
    assert.equal((await tributary(['keys', 'revoke', 'web shop'], { cwd: dir })).code, 0);
    assert.doesNotMatch((await tributary(['keys', 'list'], { cwd: dir })).stdout, /web shop/);
    assert.match((await tributary(['keys', 'list', '--all'], { cwd: dir })).stdout, /web shop/);
    assert.equal((await tributary(['keys', 'revoke', 'web shop'], { cwd: dir })).code, 2);
  });

  it(
    "runs the server, the pipelines and the models' scheduler under `up`, sharing one log and one metrics registry",
    { timeout: 120_000 },
    async () => {
      const dir = project(
        // An address not on this machine: `up` listens where --host and --port say.
        'project: up\nlogging: {format: json}\nserver:\n  host: 192.0.2.1\nstreams:\n  clicks:\n    auth: none\n',
      );
      mkdirSync(path.join(dir, 'pipelines'));
      writeFileSync(
        path.join(dir, 'pipelines', 'clicks.yaml'),
        'source: {type: topic, topic: events.clicks}\nsinks:\n  - type: iceberg\n    table: bronze.clicks\nbatch: {interval: 100ms}\n',
      );
      mkdirSync(path.join(dir, 'models', 'gold'), { recursive: true });
      writeFileSync(
        path.join(dir, 'models', 'gold', 'pages.sql'),
        "/* ---\nafter: [bronze.clicks]\n--- */\nselect page, count(*) as clicks from ref('bronze.clicks') group by page\n",
      );
      const up = startCli(['up', '--host', '127.0.0.1', '--port', '0'], dir);
      try {
        const url = await up.url;
        const events = Array.from({ length: 25 }, (_, i) => ({ id: `c${i}`, page: `/p${i % 3}` }));
        const response = await fetch(`${url}/v1/streams/clicks/events`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(events),
        });
        assert.equal(response.status, 202);
        let metrics = '';
        for (let i = 0; i < 100 && !/tributary_pipeline_records_out_total\{[^}]*\} 25/.test(metrics); i++) {
          await sleep(200);
          metrics = await (await fetch(`${url}/metrics`)).text();
        }
        assert.match(
          metrics,
          /tributary_pipeline_records_out_total\{pipeline="clicks",sink="iceberg:bronze.clicks"\} 25/,
        );
        assert.match(metrics, /tributary_ingest_events_accepted_total\{stream="clicks"\} 25/);
        // The process's own: CPU, memory, event-loop delay, garbage collection.
        for (const name of [
          'process_cpu_seconds_total',
          'process_resident_memory_bytes',
          'nodejs_eventloop_lag_p99_seconds',
          'nodejs_heap_size_used_bytes',
        ])
          assert.match(metrics, new RegExp(`^${name} \\d`, 'm'), name);
        // The scheduler builds the gold model once its input has committed.
        for (
          let i = 0;
          i < 100 && !/tributary_job_runs_total\{[^}]*status="succeeded"[^}]*\} 1/.test(metrics);
          i++
        ) {
          await sleep(200);
          metrics = await (await fetch(`${url}/metrics`)).text();
        }
        assert.match(metrics, /tributary_job_runs_total\{[^}]*job="model:gold.pages"[^}]*\} 1/);
        const ready = (await (await fetch(`${url}/readyz`)).json()) as {
          status: string;
          components: Record<string, unknown>;
        };
        assert.equal(ready.status, 'ok');
        assert.ok(ready.components['pipeline clicks']);
        // A second process for the same pipeline is refused, naming the one that runs it.
        const second = await tributary(['run', 'clicks', '--once'], { cwd: dir });
        assert.equal(second.code, 1);
        assert.match(
          second.stderr,
          new RegExp(
            `\\[PIPELINE_RUNNING\\] pipeline clicks already runs in process ${up.child.pid} on this machine`,
          ),
        );
        up.child.kill('SIGTERM');
        assert.equal(await up.exited, 0, up.stderr());
      } finally {
        up.child.kill('SIGKILL');
      }
      const query = await tributary(
        ['query', 'select count(*)::int as n from bronze.clicks', '--format', 'json'],
        { cwd: dir },
      );
      assert.equal(query.code, 0, query.stderr);
      assert.equal((JSON.parse(query.stdout) as Array<{ n: number }>)[0]?.n, 25);
      const gold = await tributary(
        ['query', 'select sum(clicks)::int as n from gold.pages', '--format', 'json'],
        { cwd: dir },
      );
      assert.equal(gold.code, 0, gold.stderr);
      assert.equal((JSON.parse(gold.stdout) as Array<{ n: number }>)[0]?.n, 25);
      // Stopped, it left no lock behind.
      assert.equal((await tributary(['run', 'clicks', '--once'], { cwd: dir })).code, 0);
    },
  );

  it('serves alone with `serve --port`, and doctor checks the server configuration', async () => {
    const dir = project('streams:\n  clicks: {}\n');
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const port = (busy.address() as { port: number }).port;
    writeFileSync(path.join(dir, 'tributary.yaml'), `server:\n  port: ${port}\nstreams:\n  clicks: {}\n`);
    const doctor = await tributary(['doctor'], { cwd: dir });
    assert.match(doctor.stdout, /warn\s+server\s+port free\s+127\.0\.0\.1:\d+ is in use/);
    assert.match(doctor.stdout, /warn\s+server\s+streams have keys\s+no active API key may send to: clicks/);
    assert.match(doctor.stdout, /tributary keys create --stream clicks/);
    const inUse = await tributary(['serve'], { cwd: dir });
    assert.equal(inUse.code, 1);
    assert.match(inUse.stderr, /cannot listen on 127\.0\.0\.1:\d+.*another process uses port/);
    busy.close();

    writeFileSync(
      path.join(dir, 'tributary.yaml'),
      'server:\n  tls: {cert: missing.pem, key: missing.key}\nstreams:\n  clicks: {}\n',
    );
    assert.match((await tributary(['doctor'], { cwd: dir })).stdout, /fail\s+server\s+TLS certificate/);

    // auto passes; two HTTP threads on two cores or fewer are warned about (the log's thread needs one).
    writeFileSync(path.join(dir, 'tributary.yaml'), 'streams:\n  clicks: {}\n');
    assert.match(
      (await tributary(['doctor'], { cwd: dir })).stdout,
      /pass\s+server\s+HTTP threads\s+\d+ thread\(s\) serve HTTP \(server\.threads: auto; \d+ core\(s\)\)/,
    );
    if (availableParallelism() <= 2) {
      writeFileSync(path.join(dir, 'tributary.yaml'), 'server:\n  threads: 2\nstreams:\n  clicks: {}\n');
      assert.match(
        (await tributary(['doctor'], { cwd: dir })).stdout,
        /warn\s+server\s+HTTP threads\s+2 thread\(s\) serve HTTP .*shares a core with HTTP threads/,
      );
    }

    writeFileSync(path.join(dir, 'tributary.yaml'), 'streams:\n  clicks: {}\n');
    await tributary(['keys', 'create', '--stream', 'clicks', '--name', 'k'], { cwd: dir });
    const serve = startCli(['serve', '--port', '0'], dir);
    try {
      const url = await serve.url;
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      assert.equal(
        (
          await fetch(`${url}/v1/streams/clicks/events`, {
            method: 'POST',
            body: '{}',
            headers: { 'content-type': 'application/json' },
          })
        ).status,
        401,
      );
      serve.child.kill('SIGINT');
      assert.equal(await serve.exited, 0);
    } finally {
      serve.child.kill('SIGKILL');
    }
  });

  it('serves probes for a pipeline worker with `run --health-port`', { timeout: 60_000 }, async () => {
    const dir = project('project: worker\nlogging: {format: json}\n');
    mkdirSync(path.join(dir, 'pipelines'));
    writeFileSync(
      path.join(dir, 'pipelines', 'clicks.yaml'),
      'source: {type: topic, topic: events.clicks}\nsinks:\n  - type: iceberg\n    table: bronze.clicks\nbatch: {interval: 100ms}\n',
    );
    const bad = await tributary(['run', 'clicks', '--health-port', 'eighty'], { cwd: dir });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /eighty is not a port number/);
    const worker = startCli(['run', 'clicks', '--health-port', '0'], dir);
    try {
      const url = await worker.url;
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      const ready = await fetch(`${url}/readyz`);
      const body = (await ready.json()) as { components: Record<string, { status: string }> };
      assert.equal(ready.status, 200, JSON.stringify(body));
      assert.equal(body.components['pipeline clicks']?.status, 'ok');
      assert.match(await (await fetch(`${url}/metrics`)).text(), /tributary_pipeline_/);
      assert.equal((await fetch(`${url}/v1/query`, { method: 'POST' })).status, 405);
      worker.child.kill('SIGTERM');
      assert.equal(await worker.exited, 0, worker.stderr());
    } finally {
      worker.child.kill('SIGKILL');
    }
  });

  it('runs a project of models alone under `up --no-server`, and refuses one with nothing to run', async () => {
    const empty = project('project: empty\n');
    const refused = await tributary(['up'], { cwd: empty });
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /has nothing to run/);

    const dir = project('project: models\nlogging: {format: json}\n');
    mkdirSync(path.join(dir, 'models', 'gold'), { recursive: true });
    writeFileSync(
      path.join(dir, 'models', 'gold', 'numbers.sql'),
      '/* ---\nschedule: "*/1 * * * *"\n--- */\nselect 1 as n\n',
    );
    const misplaced = await tributary(['up', '--no-server', '--port', '0'], { cwd: dir });
    assert.equal(misplaced.code, 2);
    assert.match(misplaced.stderr, /--host and --port are the HTTP server's.*--health-port/);
    const up = startCli(['up', '--no-server', '--health-port', '0'], dir);
    try {
      const url = await up.url;
      const ready = (await (await fetch(`${url}/readyz`)).json()) as { status: string };
      assert.equal(ready.status, 'ok');
      up.child.kill('SIGTERM');
      assert.equal(await up.exited, 0, up.stderr());
    } finally {
      up.child.kill('SIGKILL');
    }
  });
});
