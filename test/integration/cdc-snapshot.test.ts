/**
 * CDC snapshots (docs/cdc.md): keyset chunks between watermarks, consistent with the stream.
 *  - A snapshot killed with -9 half-way resumes after the last chunk in the log: every row exactly once.
 *  - `tributary cdc backfill --where` re-reads part of a table while changes stream in, and the silver
 *    mirror still equals the table.
 *  - A chunk is not read while a commit streamed before its low watermark is not visible yet.
 *  - int8 values beyond ±2^53 are exact JSON integers in snapshot rows and streamed changes (keys, old
 *    rows, arrays), and Iceberg `long`s with every digit.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import {
  Background,
  cdcStatus,
  cli,
  makeProject,
  postgresSkipReason,
  PrivatePostgres,
  query,
  removeProjects,
  sourceYaml,
  waitFor,
} from './cdc-support.ts';

const skip = await postgresSkipReason();

/** Every record of a topic, as parsed change records. */
async function topicRecords(
  root: string,
  topic: string,
): Promise<Array<{ key: string; value: Record<string, unknown> }>> {
  const result = await cli(root, ['topics', 'read', topic, '--limit', '10000000']);
  assert.equal(result.code, 0, result.stderr);
  return result.stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const record = JSON.parse(line) as { key: string; value: string };
      return { key: record.key, value: JSON.parse(record.value) as Record<string, unknown> };
    });
}

describe('postgres CDC snapshots', { skip }, () => {
  let server: PrivatePostgres;

  before(async () => {
    server = await PrivatePostgres.start();
  });

  after(async () => {
    Background.killAll();
    await server?.stop();
    removeProjects();
  });

  it(
    'resumes a snapshot killed half-way without copying finished chunks again',
    { timeout: 5 * 60_000 },
    async () => {
      const client = await server.client();
      // Enough small chunks that the snapshot lasts a few seconds: the kill must land half-way.
      const rows = 120_000;
      await client.query(
        `create table public.big (id int primary key, v text, n numeric(10, 2));
       insert into public.big select g, md5(g::text), g / 100.0 from generate_series(1, ${rows}) g;`,
      );
      const project = makeProject('tributary-cdc-snap-');
      project.write(
        'sources/bulk.yaml',
        sourceYaml(
          server.proxy.port,
          ['public.big'],
          'snapshot_mode: initial_only\nsnapshot: {chunk_size: 500}\nslot_name: snap_bulk\n',
        ),
      );
      const first = new Background(project.root, ['cdc', 'run', 'bulk']);
      const halfway = await waitFor(
        () => `a third of the snapshot; the source said:\n${first.output.slice(-3000)}`,
        async () => {
          const status = await cdcStatus(project.root, 'bulk').catch(() => undefined);
          const task = status?.snapshots[0];
          return task && task.rows >= rows / 3 ? task : undefined;
        },
        120_000,
        50,
      );
      await first.kill('SIGKILL');
      assert.ok(halfway.rows < rows, 'killed before the end');

      const second = new Background(project.root, ['cdc', 'run', 'bulk']);
      assert.equal(await second.exited, 0, second.output.slice(-3000)); // initial_only: stops when done
      assert.match(second.output, /rows \(\d+%\)|finished/, 'progress is shown');

      const records = await topicRecords(project.root, 'cdc.bulk');
      const keys = new Set(records.map((r) => r.key));
      assert.equal(records.length, rows, 'every row once: no chunk copied twice, none skipped');
      assert.equal(keys.size, rows);
      assert.ok(records.every((r) => r.value.op === 'snapshot'));
      const status = await cdcStatus(project.root, 'bulk');
      assert.deepEqual(status.snapshotted, ['public.big']);
      assert.equal(status.snapshots.length, 0);
      await client.end();
    },
  );

  it(
    'backfills part of a table while changes stream, and the mirror stays exact',
    { timeout: 5 * 60_000 },
    async () => {
      const client = await server.client();
      await client.query(
        `create table public.acct (id int primary key, balance numeric(12, 2), owner text);
       insert into public.acct select g, g, 'owner ' || g from generate_series(1, 5000) g;`,
      );
      const project = makeProject('tributary-cdc-backfill-');
      project.write(
        'sources/bank.yaml',
        sourceYaml(server.proxy.port, ['public.acct'], 'snapshot: {chunk_size: 300}\nslot_name: snap_bank\n'),
      );
      project.write(
        'pipelines/acct.yaml',
        [
          'source: {type: topic, topic: cdc.bank}',
          'transforms: [{type: cdc}]',
          'sinks: [{type: iceberg, table: silver.acct, mode: upsert, key: [id], schema: schemas/public.acct.json}]',
          '',
        ].join('\n'),
      );
      assert.equal((await cli(project.root, ['cdc', 'schema', 'bank', '--out', 'schemas'])).code, 0);
      const source = new Background(project.root, ['cdc', 'run', 'bank']);
      await waitFor(
        () => `the initial snapshot; the source said:\n${source.output.slice(-3000)}`,
        async () =>
          ((await cdcStatus(project.root, 'bank').catch(() => undefined))?.snapshotted.length ?? 0) === 1,
        120_000,
      );

      // Changes stream in while the backfill reads: updates, deletes and inserts inside its range.
      let stop = false;
      let changes = 0;
      const writer = (async () => {
        let next = 5001;
        while (!stop) {
          const id = 1 + Math.floor(Math.random() * 1200);
          const r = Math.random();
          if (r < 0.6)
            await client.query('update acct set balance = balance + 1, owner = owner || $2 where id = $1', [
              id,
              '+',
            ]);
          else if (r < 0.8) await client.query('delete from acct where id = $1', [id]);
          else
            await client.query('insert into acct values ($1, 0, $2) on conflict do nothing', [
              next++ % 1200 || 1,
              'new',
            ]);
          changes++;
          if (changes % 20 === 0) await sleep(5);
        }
      })();
      const requested = await cli(project.root, [
        'cdc',
        'backfill',
        'bank',
        '--table',
        'public.acct',
        '--where',
        'id <= 1000',
      ]);
      assert.equal(requested.code, 0, requested.stderr);
      assert.match(requested.stdout, /Backfill .* requested/);
      await waitFor(
        () => `the backfill; the source said:\n${source.output.slice(-3000)}`,
        async () => /backfill of public\.acct finished/.test(source.output),
        120_000,
      );
      stop = true;
      await writer;

      const bad = await cli(project.root, [
        'cdc',
        'backfill',
        'bank',
        '--table',
        'public.acct',
        '--where',
        'no_such_column > 1',
      ]);
      assert.equal(bad.code, 2, 'a condition that does not parse is refused at once');

      // On a timeout, the rows that still differ say which change went missing.
      let differing: string[] = [];
      await waitFor(
        () => `the pipeline to catch up; rows differing (table / mirror): ${differing.join(', ')}`,
        async () => {
          const run = await cli(project.root, ['run', 'acct', '--once']);
          assert.equal(run.code, 0, run.stderr);
          const expected = (
            await client.query<{ r: string }>(
              `select id || ':' || balance || ':' || owner as r from acct order by id`,
            )
          ).rows.map((r) => r.r);
          const actual = (
            await query(
              project.root,
              `select id || ':' || balance::varchar || ':' || owner as r from silver.acct where _deleted is not true order by id`,
            )
          ).map((r) => String(r.r));
          const inTable = new Set(expected);
          const inMirror = new Set(actual);
          differing = [
            ...expected.filter((r) => !inMirror.has(r)).map((r) => `${r} / -`),
            ...actual.filter((r) => !inTable.has(r)).map((r) => `- / ${r}`),
          ].slice(0, 20);
          return JSON.stringify(actual) === JSON.stringify(expected);
        },
        120_000,
        500,
      );

      const records = await topicRecords(project.root, 'cdc.bank');
      const backfilled = records.filter(
        (r) => r.value.op === 'snapshot' && Number((r.value.key as { id: number }).id) <= 1000,
      );
      assert.ok(
        backfilled.length > 1000,
        `the range was read again (${backfilled.length} snapshot rows with id ≤ 1000)`,
      );
      assert.ok(changes > 0);
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-3000));
      await client.end();
    },
  );

  it(
    'reads no chunk before a commit already streamed is visible (held here by a synchronous standby)',
    { timeout: 5 * 60_000 },
    async () => {
      const client = await server.client();
      await client.query(
        `create table public.held (id int primary key, owner text);
         insert into public.held select g, 'owner ' || g from generate_series(1, 50) g;`,
      );
      const project = makeProject('tributary-cdc-held-');
      project.write(
        'sources/held.yaml',
        sourceYaml(server.proxy.port, ['public.held'], 'snapshot: {chunk_size: 300}\nslot_name: snap_held\n'),
      );
      project.write(
        'pipelines/held.yaml',
        [
          'source: {type: topic, topic: cdc.held}',
          'transforms: [{type: cdc}]',
          'sinks: [{type: iceberg, table: silver.held, mode: upsert, key: [id], schema: schemas/public.held.json}]',
          '',
        ].join('\n'),
      );
      assert.equal((await cli(project.root, ['cdc', 'schema', 'held', '--out', 'schemas'])).code, 0);
      const source = new Background(project.root, ['cdc', 'run', 'held']);
      await waitFor(
        () => `the initial snapshot; the source said:\n${source.output.slice(-3000)}`,
        async () =>
          ((await cdcStatus(project.root, 'held').catch(() => undefined))?.snapshotted.length ?? 0) === 1,
        120_000,
      );
      // One session's commits wait for a standby that never answers: its commit record is in the WAL
      // (and streamed), its update not visible to other sessions. Every other session commits locally.
      // Another holds a transaction id and stays open throughout: it must not hold the chunk up.
      const idleSession = await server.client();
      await idleSession.query('begin');
      await idleSession.query('select pg_current_xact_id()');
      await client.query(`alter system set synchronous_standby_names = 'absent'`);
      await client.query(`alter system set synchronous_commit = 'local'`);
      await client.query('select pg_reload_conf()');
      let heldSession: Awaited<ReturnType<PrivatePostgres['client']>> | undefined;
      try {
        heldSession = await server.client();
        await sleep(500);
        await heldSession.query('set synchronous_commit = on');
        const { rows } = await heldSession.query<{ pid: number }>('select pg_backend_pid() as pid');
        const update = heldSession.query(`update held set owner = 'NEW' where id = 5`).catch((e: Error) => e);
        await sleep(1000);
        const { rows: seen } = await client.query<{ owner: string }>('select owner from held where id = 5');
        assert.equal(seen[0]!.owner, 'owner 5', 'the update is not visible yet');
        const requested = await cli(project.root, ['cdc', 'backfill', 'held', '--table', 'public.held']);
        assert.equal(requested.code, 0, requested.stderr);
        await sleep(3000);
        assert.doesNotMatch(
          source.output,
          /backfill of public\.held finished/,
          `the chunk waits:\n${source.output.slice(-3000)}`,
        );
        // The wait ends (the commit was local already): the update becomes visible.
        await client.query('select pg_cancel_backend($1)', [rows[0]!.pid]);
        await update;
      } finally {
        await client.query('alter system reset synchronous_standby_names');
        await client.query('alter system reset synchronous_commit');
        await client.query('select pg_reload_conf()');
        await heldSession?.end();
      }
      await waitFor(
        () => `the backfill; the source said:\n${source.output.slice(-3000)}`,
        async () => /backfill of public\.held finished/.test(source.output),
        20_000,
      );
      await idleSession.query('rollback');
      await idleSession.end();
      await waitFor(
        'the mirror to have the update',
        async () => {
          const run = await cli(project.root, ['run', 'held', '--once']);
          assert.equal(run.code, 0, run.stderr);
          const mirror = await query(
            project.root,
            `select owner from silver.held where id = 5 and _deleted is not true`,
          );
          return String(mirror[0]?.owner) === 'NEW';
        },
        60_000,
        500,
      );
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-3000));
      await client.end();
    },
  );

  it(
    'writes int8 beyond ±2^53 as exact integers, from the snapshot and the stream, into Iceberg longs',
    { timeout: 5 * 60_000 },
    async () => {
      const client = await server.client();
      await client.query(
        `create table public.bigs (id bigint primary key, v bigint, vs bigint[], note text);
         insert into public.bigs values
           (9007199254740993, -9223372036854775808, '{9223372036854775807,-9223372036854775808,1}', 'a'),
           (-9223372036854775808, 9223372036854775807, null, 'b'),
           (1, 2, '{3}', 'c');`,
      );
      const project = makeProject('tributary-cdc-bigs-');
      project.write(
        'sources/bigs.yaml',
        sourceYaml(server.proxy.port, ['public.bigs'], 'slot_name: snap_bigs\n'),
      );
      const pipeline = (name: string, transform: string, sink: string) =>
        project.write(
          `pipelines/${name}.yaml`,
          [
            'source: {type: topic, topic: cdc.bigs}',
            `transforms: [{type: cdc${transform}}]`,
            `sinks: [{${sink}}]`,
            'dlq: {max: 1}',
            '',
          ].join('\n'),
        );
      pipeline(
        'silver',
        '',
        'type: iceberg, table: silver.bigs, mode: upsert, key: [id], schema: schemas/public.bigs.json',
      );
      // A table made from the first records (no schema file): inferred from the values.
      pipeline('inferred', '', 'type: iceberg, table: silver.bigs_inferred, partition: ""');
      pipeline('bronze', ', format: change', 'type: iceberg, table: bronze.bigs, partition: ""');
      assert.equal((await cli(project.root, ['cdc', 'schema', 'bigs', '--out', 'schemas'])).code, 0);
      const source = new Background(project.root, ['cdc', 'run', 'bigs']);
      await waitFor(
        () => `the initial snapshot; the source said:\n${source.output.slice(-3000)}`,
        async () =>
          ((await cdcStatus(project.root, 'bigs').catch(() => undefined))?.snapshotted.length ?? 0) === 1,
        120_000,
      );
      await client.query(
        `insert into bigs values (9223372036854775807, -9007199254740993, '{-9007199254740993}', 'd')`,
      );
      await client.query(`update bigs set v = 9223372036854775806 where id = 9007199254740993`);
      await client.query(`delete from bigs where id = -9223372036854775808`);
      // The value of each record as the source wrote it, by op.
      const texts = await waitFor(
        () => `the streamed changes; the source said:\n${source.output.slice(-3000)}`,
        async () => {
          const result = await cli(project.root, ['topics', 'read', 'cdc.bigs', '--limit', '100']);
          assert.equal(result.code, 0, result.stderr);
          const values = result.stdout
            .trim()
            .split('\n')
            .filter(Boolean)
            .map((line) => (JSON.parse(line) as { value: string }).value);
          return values.length === 6 ? values : undefined;
        },
      );
      const record = (op: string, id: string) =>
        texts.find((t) => t.startsWith(`{"op":"${op}"`) && t.includes(`"key":{"id":${id}}`)) ??
        assert.fail(`no ${op} record with key ${id}, digits unquoted:\n${texts.join('\n')}`);
      assert.match(
        record('snapshot', '9007199254740993'),
        /"after":\{"id":9007199254740993,"v":-9223372036854775808,"vs":\[9223372036854775807,-9223372036854775808,1\],/,
      );
      assert.match(
        record('snapshot', '-9223372036854775808'),
        /"after":\{"id":-9223372036854775808,"v":9223372036854775807,/,
      );
      assert.match(record('snapshot', '1'), /"after":\{"id":1,"v":2,"vs":\[3\],/);
      assert.match(
        record('insert', '9223372036854775807'),
        /"after":\{"id":9223372036854775807,"v":-9007199254740993,"vs":\[-9007199254740993\],/,
      );
      assert.match(
        record('update', '9007199254740993'),
        /"after":\{"id":9007199254740993,"v":9223372036854775806,/,
      );
      assert.match(
        record('delete', '-9223372036854775808'),
        /"before":\{"id":-9223372036854775808\},"after":null,/,
        'a delete carries the key as its old row',
      );
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-3000));

      for (const name of ['silver', 'inferred', 'bronze']) {
        const run = await cli(project.root, ['run', name, '--once']);
        assert.equal(run.code, 0, run.stderr);
      }
      const columnTypes = async (table: string) => {
        const shown = await cli(project.root, ['tables', 'show', table, '--json']);
        assert.equal(shown.code, 0, shown.stderr);
        const metadata = JSON.parse(shown.stdout) as {
          'current-schema-id': number;
          schemas: Array<{ 'schema-id': number; fields: Array<{ name: string; type: unknown }> }>;
        };
        const schema = metadata.schemas.find((s) => s['schema-id'] === metadata['current-schema-id'])!;
        return Object.fromEntries(schema.fields.map((f) => [f.name, f.type]));
      };
      for (const table of ['silver.bigs', 'silver.bigs_inferred']) {
        const types = await columnTypes(table);
        assert.equal(types.id, 'long', `${table}.id`);
        assert.equal(types.v, 'long', `${table}.v`);
        assert.equal((types.vs as { element: unknown }).element, 'long', `${table}.vs`);
      }
      assert.deepEqual(
        await query(
          project.root,
          `select id::varchar as id, v::varchar as v, vs::varchar as vs, note from silver.bigs
            where _deleted is not true order by id`,
        ),
        [
          { id: '1', v: '2', vs: '[3]', note: 'c' },
          {
            id: '9007199254740993',
            v: '9223372036854775806',
            vs: '[9223372036854775807, -9223372036854775808, 1]',
            note: 'a',
          },
          { id: '9223372036854775807', v: '-9007199254740993', vs: '[-9007199254740993]', note: 'd' },
        ],
        'the mirror equals the table, every digit',
      );
      assert.deepEqual(
        await query(
          project.root,
          `select id::varchar as id, v::varchar as v, _deleted from silver.bigs_inferred
            where id in (-9223372036854775808, 9007199254740993) order by id, v`,
        ),
        [
          { id: '-9223372036854775808', v: '9223372036854775807', _deleted: false },
          { id: '-9223372036854775808', v: null, _deleted: true },
          { id: '9007199254740993', v: '-9223372036854775808', _deleted: false },
          { id: '9007199254740993', v: '9223372036854775806', _deleted: false },
        ],
      );
      assert.deepEqual(
        await query(project.root, `select "key", before from bronze.bigs where op = 'delete'`),
        [{ key: '{"id":-9223372036854775808}', before: '{"id":-9223372036854775808}' }],
      );
      await client.end();
    },
  );
});
