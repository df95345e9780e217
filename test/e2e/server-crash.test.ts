/**
 * Acknowledged means durable, and retries never duplicate — tested the hard way. `tributary serve` takes a
 * load of batches from concurrent clients and is killed with -9 mid-way, three times; after each restart
 * the clients retry every request that got no answer. At the end the log, opened directly, holds every
 * event that got a 202 and no event twice — also for requests that had only an Idempotency-Key.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, it } from 'node:test';
import { EmbeddedLog } from '../../src/log/embedded-log.ts';
import { startCli, tributary } from '../cli.ts';

interface Sent {
  readonly body: string;
  readonly ids: readonly string[];
  readonly idempotencyKey?: string;
}

const children = new Set<ChildProcess>();
after(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});

async function startServer(
  project: string,
): Promise<{ child: ChildProcess; url: string; exited: Promise<number | null> }> {
  const { child, url, exited } = startCli(['serve'], project);
  children.add(child);
  return { child, url: await url, exited };
}

it(
  'keeps every acknowledged event and duplicates none across kills with -9',
  { timeout: 180_000 },
  async (t) => {
    const project = mkdtempSync(path.join(tmpdir(), 'tributary-server-crash-'));
    writeFileSync(
      path.join(project, 'tributary.yaml'),
      [
        'project: crash',
        'logging: {level: warn, format: json}',
        'server:',
        '  port: 0',
        '  rate_limit: {per_key: {requests_per_second: 0}, per_ip: {requests_per_second: 0}}',
        'streams:',
        '  load: {}',
        '',
      ].join('\n'),
    );
    const created = await tributary(['keys', 'create', '--stream', 'load', '--name', 'loader', '--json'], {
      cwd: project,
    });
    assert.equal(created.code, 0, created.stderr);
    const key = (JSON.parse(created.stdout) as { key: string }).key;

    const acknowledged = new Map<string, string>(); // event id → request
    const idempotent = new Map<string, number>(); // Idempotency-Key → events acknowledged
    let unanswered: Sent[] = [];
    let sequence = 0;
    let retrying = false;
    let retriedDuplicates = 0;
    const newRequest = (worker: number): Sent => {
      const n = 1 + (sequence % 20);
      const request = sequence++;
      if (request % 3 === 0) {
        const events = Array.from({ length: n }, (_, i) => ({ worker, request, i, kind: 'no-id' }));
        return { body: JSON.stringify(events), ids: [], idempotencyKey: `req-${request}` };
      }
      const ids = Array.from({ length: n }, (_, i) => `w${worker}-r${request}-e${i}`);
      return { body: JSON.stringify(ids.map((id) => ({ id, worker, request }))), ids };
    };
    const send = async (url: string, sent: Sent): Promise<number> => {
      const response = await fetch(`${url}/v1/streams/load/events`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${key}`,
          ...(sent.idempotencyKey ? { 'idempotency-key': sent.idempotencyKey } : {}),
        },
        body: sent.body,
      });
      const body = (await response.json()) as { accepted: number; duplicates: number; ids: string[] };
      if (
        retrying &&
        response.status === 202 &&
        (body.duplicates > 0 || response.headers.get('idempotent-replayed'))
      )
        retriedDuplicates++;
      if (response.status === 202) {
        if (sent.idempotencyKey) idempotent.set(sent.idempotencyKey, body.accepted);
        for (const id of sent.ids) acknowledged.set(id, sent.body);
      }
      return response.status;
    };

    for (let round = 0; round < 3; round++) {
      const server = await startServer(project);
      // Requests that got no answer before the last kill: retried now, and every one must succeed.
      retrying = true;
      for (const sent of unanswered) assert.equal(await send(server.url, sent), 202);
      retrying = false;
      unanswered = [];
      let killed = false;
      const workers = Array.from({ length: 12 }, async (_, worker) => {
        while (!killed) {
          const sent = newRequest(worker);
          try {
            const status = await send(server.url, sent);
            assert.equal(status, 202);
          } catch (error) {
            if (!killed) throw error;
            unanswered.push(sent);
          }
        }
      });
      await sleep(1500 + Math.random() * 1500);
      killed = true;
      server.child.kill('SIGKILL');
      await server.exited;
      await Promise.all(workers);
    }
    const last = await startServer(project);
    retrying = true;
    for (const sent of unanswered) assert.equal(await send(last.url, sent), 202);
    retrying = false;
    t.diagnostic(
      `${acknowledged.size} events acknowledged; ${retriedDuplicates} unanswered request(s) had been stored before the kill`,
    );
    // A retry of acknowledged requests changes nothing.
    const sample = [...new Set(acknowledged.values())].slice(0, 20);
    for (const body of sample) {
      const response = await fetch(`${last.url}/v1/streams/load/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body,
      });
      const answer = (await response.json()) as { accepted: number; duplicates: number };
      assert.equal(answer.duplicates, answer.accepted);
    }
    last.child.kill('SIGTERM');
    assert.equal(await last.exited, 0, 'a clean stop on SIGTERM');

    const log = await EmbeddedLog.open({
      directory: path.join(project, '.tributary', 'log'),
      retentionIntervalMs: 0,
    });
    const seen = new Map<string, number>();
    const perKey = new Map<string, number>();
    for (const { partition, start, end } of await log.offsets('events.load')) {
      for (let next = start; next < end;) {
        const records = await log.read('events.load', partition, next, { maxRecords: 10_000 });
        for (const record of records) {
          const value = JSON.parse(new TextDecoder().decode(record.value)) as { id?: string };
          if (value.id) seen.set(value.id, (seen.get(value.id) ?? 0) + 1);
          const idempotencyKey = record.headers['tributary-idempotency-key'];
          if (idempotencyKey) perKey.set(idempotencyKey, (perKey.get(idempotencyKey) ?? 0) + 1);
        }
        next = records[records.length - 1]!.offset + 1;
      }
    }
    await log.close();
    assert.ok(acknowledged.size > 500, `only ${acknowledged.size} events acknowledged`);
    const missing = [...acknowledged.keys()].filter((id) => !seen.has(id));
    assert.deepEqual(missing.slice(0, 10), [], `${missing.length} acknowledged events missing`);
    const doubled = [...seen].filter(([, count]) => count > 1);
    assert.deepEqual(doubled.slice(0, 10), [], `${doubled.length} events stored twice`);
    for (const [idempotencyKey, accepted] of idempotent) {
      assert.equal(perKey.get(idempotencyKey), accepted, `request ${idempotencyKey} stored once`);
    }
  },
);
