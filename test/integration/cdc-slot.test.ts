/**
 * CDC slot safety and faults (docs/cdc.md): a second source on a slot in use fails naming the pid that
 * holds it; heartbeats keep the slot advancing while the captured tables are idle; `tributary doctor`
 * checks what replication needs; a change it failed to append is not lost to the ones after it; the status API (`startSources`, for /readyz) reports healthy, then
 * stalled when its pipelines do not commit.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { openProjectLog, pipelineSchema, sourceSchema, startSources } from '../../src/components.ts';
import { loadProject } from '../../src/core/project.ts';
import {
  Background,
  cdcStatus,
  cli,
  ENV,
  lsn,
  makeProject,
  postgresSkipReason,
  PrivatePostgres,
  removeProjects,
  sourceYaml,
  waitFor,
} from './cdc-support.ts';

const skip = await postgresSkipReason();

describe('postgres CDC slots', { skip }, () => {
  let server: PrivatePostgres;

  before(async () => {
    server = await PrivatePostgres.start();
    const client = await server.client();
    await client.query(`create table public.quiet (id int primary key, body text);
      create table public.busy (id serial primary key, body text);
      insert into public.quiet values (1, 'x');`);
    await client.end();
  });

  after(async () => {
    Background.killAll();
    await server?.stop();
    removeProjects();
  });

  it(
    'refuses a second source on a slot in use, naming the pid that holds it',
    { timeout: 120_000 },
    async () => {
      const project = makeProject('tributary-cdc-slot-');
      project.write(
        'sources/one.yaml',
        sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: shared_slot\n'),
      );
      const first = new Background(project.root, ['cdc', 'run', 'one']);
      const client = await server.client();
      // Once it streams: before, the slot is held for moments by the backends that create it and read
      // the snapshot, whose pids are not the one that keeps it.
      await waitFor('the first source to stream', async () =>
        first.output.includes('streaming from slot shared_slot') ? true : undefined,
      );
      const pid = await waitFor('the first source to hold the slot', async () => {
        const row = (
          await client.query<{ pid: number | null }>(
            `select active_pid as pid from pg_replication_slots where slot_name = 'shared_slot'`,
          )
        ).rows[0];
        return row?.pid ?? undefined;
      });
      // Another project (its own log) configured with the same slot.
      const other = makeProject('tributary-cdc-slot2-');
      other.write(
        'sources/two.yaml',
        sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: shared_slot\n'),
      );
      const second = await cli(other.root, ['cdc', 'run', 'two']);
      assert.equal(second.code, 1);
      assert.match(second.stderr, new RegExp(`CDC_SLOT_IN_USE.*pid ${pid}`));
      assert.equal(await first.kill('SIGTERM'), 0, first.output.slice(-2000));
      await client.end();
    },
  );

  it(
    'advances the slot with heartbeats while the captured tables are idle',
    { timeout: 120_000 },
    async () => {
      const project = makeProject('tributary-cdc-heartbeat-');
      project.write(
        'sources/idle.yaml',
        sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: idle_slot\nsnapshot_mode: never\n'),
      );
      const source = new Background(project.root, ['cdc', 'run', 'idle']);
      const client = await server.client();
      await waitFor(
        'the slot',
        async () =>
          (await client.query(`select 1 from pg_replication_slots where slot_name = 'idle_slot' and active`))
            .rows.length > 0,
      );
      // WAL grows through a table the source does not capture.
      for (let i = 0; i < 200; i++) await client.query(`insert into busy (body) values (repeat('y', 2000))`);
      const target = (await client.query<{ l: string }>('select pg_current_wal_lsn()::text as l')).rows[0]!.l;
      await waitFor(
        'the confirmed LSN to pass the busy writes',
        async () => {
          const row = (
            await client.query<{ c: string }>(
              `select confirmed_flush_lsn::text as c from pg_replication_slots where slot_name = 'idle_slot'`,
            )
          ).rows[0];
          return row && lsn(row.c) >= lsn(target);
        },
        30_000,
      );
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-2000));
      await client.end();
    },
  );

  it(
    'checks wal_level, privileges, publication, replica identity, the slot and its limits in doctor',
    { timeout: 120_000 },
    async () => {
      const project = makeProject('tributary-cdc-doctor-');
      project.write(
        'sources/doc.yaml',
        sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: doc_slot\ncreate_publication: false\n'),
      );
      const result = await cli(project.root, ['doctor', '--json']);
      const outcomes = JSON.parse(result.stdout) as Array<{
        component: string;
        name: string;
        result: { status: string; detail: string; fix?: string };
      }>;
      const checks = new Map(
        outcomes.filter((o) => o.component === 'source doc').map((o) => [o.name, o.result]),
      );
      assert.equal(checks.get('wal_level')?.status, 'pass');
      assert.equal(checks.get('replication privilege')?.status, 'pass');
      assert.equal(checks.get('tables')?.status, 'pass');
      assert.equal(checks.get('publication')?.status, 'fail', 'no publication and create_publication: false');
      assert.match(checks.get('publication')?.fix ?? '', /CREATE PUBLICATION/);
      assert.equal(checks.get('replica identity')?.status, 'warn', 'text without REPLICA IDENTITY FULL');
      assert.match(checks.get('replica identity')?.fix ?? '', /REPLICA IDENTITY FULL/);
      assert.equal(checks.get('slot')?.status, 'pass');
      assert.equal(checks.get('max_slot_wal_keep_size')?.status, 'warn', 'unlimited by default');
      assert.equal(result.code, 1, 'a failing check fails doctor');

      // With a slot that exists and is held, its holder and lag are reported.
      project.write(
        'sources/doc.yaml',
        sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: doc_slot\n'),
      );
      const source = new Background(project.root, ['cdc', 'run', 'doc']);
      const client = await server.client();
      await waitFor(
        'the slot',
        async () =>
          (await client.query(`select 1 from pg_replication_slots where slot_name = 'doc_slot' and active`))
            .rows.length > 0,
      );
      const again = JSON.parse((await cli(project.root, ['doctor', '--json'])).stdout) as typeof outcomes;
      const holder = again.find((o) => o.component === 'source doc' && o.name === 'slot holder')!;
      assert.equal(holder.result.status, 'pass');
      assert.match(holder.result.detail, /active: backend pid \d+/);
      assert.equal(
        again.find((o) => o.component === 'source doc' && o.name === 'slot lag')?.result.status,
        'pass',
      );
      assert.equal(await source.kill('SIGTERM'), 0);
      await client.end();
    },
  );

  it(
    'fails the publication check for a role that may read the tables but not publish them',
    { timeout: 120_000 },
    async () => {
      const client = await server.client();
      await client.query(`drop role if exists cdc_limited`);
      await client.query(`create role cdc_limited login replication password 'limited'`);
      await client.query(`grant select on public.quiet to cdc_limited`);
      try {
        const project = makeProject('tributary-cdc-rights-');
        project.write(
          'sources/limited.yaml',
          sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: limited_slot\n')
            .replace('user: tributary', 'user: cdc_limited')
            .replace('${PG_PASSWORD}', 'limited'),
        );
        const outcomes = JSON.parse((await cli(project.root, ['doctor', '--json'])).stdout) as Array<{
          component: string;
          name: string;
          result: { status: string; detail: string; fix?: string };
        }>;
        const check = (name: string) =>
          outcomes.find((o) => o.component === 'source limited' && o.name === name)?.result;
        assert.equal(check('tables')?.status, 'pass', 'it reads them');
        // No slot yet: its holder and lag have nothing to check (not "no connection": it connected).
        assert.deepEqual(check('slot holder'), {
          status: 'pass',
          detail: 'nothing to check yet (see the slot check)',
        });
        const publication = check('publication');
        assert.equal(publication?.status, 'fail');
        assert.match(
          publication?.detail ?? '',
          /cdc_limited cannot create publication tributary_limited: no CREATE privilege on the database; it does not own public\.quiet/,
        );
        assert.match(
          publication?.fix ?? '',
          /as the tables' owner \(or a superuser\), run CREATE PUBLICATION/,
        );
      } finally {
        await client.query(`drop owned by cdc_limited`);
        await client.query(`drop role cdc_limited`);
        await client.end();
      }
    },
  );

  it(
    'reports healthy, then stalled while its pipeline commits nothing (for /readyz)',
    { timeout: 120_000 },
    async () => {
      const project = makeProject('tributary-cdc-status-');
      project.write(
        'sources/st.yaml',
        sourceYaml(server.proxy.port, ['public.quiet'], 'slot_name: status_slot\nstall_threshold: 2s\n'),
      );
      project.write(
        'pipelines/never.yaml',
        'source: {type: topic, topic: cdc.st}\nsinks: [{type: iceberg, table: silver.quiet}]\n',
      );
      for (const [key, value] of Object.entries(ENV)) process.env[key] = value;
      const loaded = loadProject(project.root, { pipelineSchema, sourceSchema });
      const log = await openProjectLog(loaded);
      const [handle] = startSources(loaded, { log, logger: pino({ level: 'silent' }) });
      try {
        await waitFor('streaming', async () => handle!.status().state === 'streaming', 30_000);
        assert.equal(handle!.status().healthy, true);
        const client = await server.client();
        await client.query(`update quiet set body = 'changed' where id = 1`);
        await client.end();
        // The pipeline never runs: its changes wait, the confirmed LSN stays, and after 2 s the source is stalled.
        await waitFor('stalled', async () => !handle!.status().healthy, 30_000);
        assert.match(handle!.status().detail, /stalled: the confirmed LSN has not moved/);
        await sleep(100);
      } finally {
        await handle!.stop();
        await log.close();
      }
      assert.equal(handle!.status().state, 'stopped');
    },
  );

  it(
    'appends no change after one it failed to append, so that one is not taken for written and lost',
    { timeout: 120_000 },
    async () => {
      // One partition, and one transaction per append: the second change lands after the first in the log.
      const project = makeProject('tributary-cdc-order-');
      project.write(
        'tributary.yaml',
        'project: cdc\nlog:\n  backend: embedded\n  durability: os\n  partitions: 1\nlogging:\n  level: info\n  format: json\n',
      );
      project.write(
        'sources/toast.yaml',
        sourceYaml(server.proxy.port, ['public.toasty'], 'slot_name: toast_slot\nmax_batch_records: 1\n'),
      );
      const client = await server.client();
      await client.query('create table public.toasty (id int primary key, note text, n int)');
      // Incompressible, so stored out of line: an update leaving it unchanged does not carry it.
      const note = randomBytes(12_000).toString('base64');
      await client.query('insert into public.toasty values (1, $1, 0)', [note]);
      let source = new Background(project.root, ['cdc', 'run', 'toast']);
      await waitFor('the snapshot', async () => (await cdcStatus(project.root, 'toast')).records === 1);
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-2000));

      // The update needs its TOASTed note read back from the table, which a lock holds up; the insert after
      // it needs nothing. The lookup then fails (its connection is terminated) while the insert waits.
      await client.query('update public.toasty set n = 1 where id = 1');
      await client.query(`insert into public.toasty values (2, 'small', 2)`);
      const locker = await server.client();
      await locker.query('begin');
      await locker.query('lock table public.toasty in access exclusive mode');
      source = new Background(project.root, ['cdc', 'run', 'toast']);
      const blocked = await waitFor('the lookup to wait for the lock', async () => {
        const { rows } = await client.query<{ pid: number }>(
          `select pid from pg_stat_activity where application_name = 'tributary-cdc-toast'
             and backend_type = 'client backend' and wait_event_type = 'Lock'`,
        );
        return rows[0]?.pid;
      });
      await sleep(1000);
      await client.query('select pg_terminate_backend($1)', [blocked]);
      await sleep(2000);
      await locker.query('rollback');
      await locker.end();

      const changes = await waitFor('both changes in the topic', async () => {
        const read = await cli(project.root, ['topics', 'read', 'cdc.toast']);
        const values = read.stdout
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse((JSON.parse(line) as { value: string }).value) as Record<string, unknown>)
          .filter((change) => change.op !== 'snapshot');
        return values.length >= 2 ? values : undefined;
      });
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-3000));
      await client.end();
      assert.deepEqual(
        changes.map((c) => `${String(c.op)} ${JSON.stringify(c.key)}`),
        ['update {"id":1}', 'insert {"id":2}'],
      );
      const after = changes[0]!.after as { note: string; n: number };
      assert.equal(after.n, 1);
      assert.equal(after.note, note, 'the unchanged TOASTed value is read back');
      assert.match(source.output, /terminating connection[^\n]*reconnecting in/, 'the read-back failed once');
    },
  );

  it(
    'passes an update whose TOASTed column was dropped before it could be read back',
    { timeout: 120_000 },
    async () => {
      const project = makeProject('tributary-cdc-dropped-');
      project.write(
        'sources/dropped.yaml',
        sourceYaml(server.proxy.port, ['public.dropped'], 'slot_name: dropped_slot\n'),
      );
      const client = await server.client();
      await client.query('create table public.dropped (id int primary key, note text, n int)');
      await client.query('insert into public.dropped values (1, $1, 0)', [
        randomBytes(12_000).toString('base64'),
      ]);
      let source = new Background(project.root, ['cdc', 'run', 'dropped']);
      await waitFor('the snapshot', async () => (await cdcStatus(project.root, 'dropped')).records === 1);
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-2000));
      // The update leaves the note unchanged (not in the WAL); the column is gone before the source reads it.
      await client.query('update public.dropped set n = 1 where id = 1');
      await client.query('alter table public.dropped drop column note');
      source = new Background(project.root, ['cdc', 'run', 'dropped']);
      const update = await waitFor(
        () => `the update in the topic; the source said:\n${source.output.slice(-3000)}`,
        async () => {
          const read = await cli(project.root, ['topics', 'read', 'cdc.dropped']);
          return read.stdout
            .trim()
            .split('\n')
            .filter(Boolean)
            .map(
              (line) => JSON.parse((JSON.parse(line) as { value: string }).value) as Record<string, unknown>,
            )
            .find((change) => change.op === 'update');
        },
        30_000,
      );
      assert.equal(await source.kill('SIGTERM'), 0, source.output.slice(-3000));
      await client.end();
      assert.deepEqual(update.after, { id: 1, n: 1 }, 'the dropped value left out');
      assert.match(source.output, /could not be read back \(column \\"note\\" does not exist now\)/);
    },
  );
});
