import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { COLUMN_TYPES_HEADER } from '../../core/pipeline/column-types.ts';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import { EmbeddedLog } from '../../log/embedded-log.ts';
import { SCHEMA_HEADER, SchemaTopic, schemaTopicOf } from './schema-topic.ts';
import { applyChunkMark, comparePositions, emptyState, formatPosition, parsePosition } from './state.ts';
import { cdcTransform } from './transform.ts';
import { postgresCdcSchema, resolvedNames } from './config.ts';

const record = (offset: number, value: Record<string, unknown>): PipelineRecord => ({
  value,
  key: 'k',
  partition: 0,
  offset,
  timestamp: 0,
  headers: {},
});

const change = (op: string, extra: Record<string, unknown>) => ({
  op,
  table: 'public.orders',
  key: { id: 1 },
  before: null,
  after: null,
  lsn: '0/10',
  commit_lsn: '1/20',
  commit_time: '2026-11-23T10:00:00.000Z',
  xid: 7,
  seq: 2,
  ...extra,
});

describe('cdc transform', () => {
  it('format row: the row after the change, deletes as tombstones, metadata on request', async () => {
    const transform = await cdcTransform.create(
      cdcTransform.schema.parse({ type: 'cdc', metadata: ['op', 'commit_time'] }),
      {} as never,
    );
    const result = await transform.process([
      record(0, change('insert', { after: { id: 1, name: 'a' } })),
      record(1, change('delete', { before: { id: 1 } })),
      record(2, { not: 'a change' }),
    ]);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        { id: 1, name: 'a', _deleted: false, _op: 'insert', _commit_time: '2026-11-23T10:00:00.000Z' },
        { id: 1, _deleted: true, _op: 'delete', _commit_time: '2026-11-23T10:00:00.000Z' },
      ],
    );
    assert.equal(result.rejected.length, 1);
    assert.equal(result.rejected[0]!.stage, 'cdc');
  });

  it('format change: one flat row per change, ordered by commit position and seq', async () => {
    const transform = await cdcTransform.create(
      cdcTransform.schema.parse({ type: 'cdc', format: 'change', tables: ['public.orders'] }),
      {} as never,
    );
    const result = await transform.process([
      record(0, change('update', { before: { id: 1, n: 1 }, after: { id: 1, n: 2 } })),
      record(1, { ...change('insert', {}), table: 'public.other' }),
    ]);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        {
          op: 'update',
          table: 'public.orders',
          lsn: '0/10',
          commit_lsn: '1/20',
          commit_position: 2 ** 32 + 0x20,
          seq: 2,
          commit_time: '2026-11-23T10:00:00.000Z',
          xid: 7,
          key: '{"id":1}',
          before: '{"id":1,"n":1}',
          after: '{"id":1,"n":2}',
        },
      ],
    );
  });
});

describe('cdc transform: column types', () => {
  it('hands the declared types of the shape a record names to the sinks, with the columns it adds', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tributary-cdc-types-'));
    const open = () => EmbeddedLog.open({ directory: dir, durability: 'os', retentionIntervalMs: 0 });
    // The pipeline's process opens the log before the source makes its schema topic.
    const pipelineLog = await open();
    const sourceLog = await open();
    try {
      await sourceLog.ensureTopic(schemaTopicOf('cdc.shop'), { partitions: 1 });
      const shapes = new SchemaTopic(sourceLog, 'cdc.shop');
      const id = await shapes.put('public.orders', { id: 'int', amount: 'decimal(10, 2)' });
      assert.equal(await shapes.put('public.orders', { id: 'int', amount: 'decimal(10, 2)' }), id, 'once');
      const context = { log: pipelineLog, sourceTopic: 'cdc.shop' } as never;
      const transform = await cdcTransform.create(
        cdcTransform.schema.parse({ type: 'cdc', metadata: ['commit_time'] }),
        context,
      );
      const named = (offset: number, schema: string | undefined): PipelineRecord => ({
        ...record(offset, change('insert', { after: { id: offset, amount: '1.50' } })),
        headers: schema === undefined ? {} : { [SCHEMA_HEADER]: schema },
      });
      const result = await transform.process([named(0, id), named(1, 'unknown-id'), named(2, undefined)]);
      assert.deepEqual(
        result.records.map((r) => r.headers[COLUMN_TYPES_HEADER]),
        [
          JSON.stringify({
            id: 'int',
            amount: 'decimal(10, 2)',
            _deleted: 'boolean',
            _commit_time: 'timestamptz',
          }),
          undefined,
          undefined,
        ],
      );
      assert.equal(result.records[0]!.headers[SCHEMA_HEADER], id, 'the other headers stay');
      const history = await cdcTransform.create(
        cdcTransform.schema.parse({ type: 'cdc', format: 'change' }),
        context,
      );
      const changes = await history.process([named(0, id)]);
      assert.equal(
        changes.records[0]!.headers[COLUMN_TYPES_HEADER],
        undefined,
        'format change: its own rows',
      );
    } finally {
      await pipelineLog.close();
      await sourceLog.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('source state', () => {
  it('orders positions by commit LSN, then sequence', () => {
    const a = parsePosition(formatPosition(0x10n, 9))!;
    const b = parsePosition(formatPosition(0x11n, 0))!;
    assert.deepEqual(a, { lsn: 0x10n, seq: 9 });
    assert.ok(comparePositions(a, b) < 0);
    assert.ok(comparePositions(b, { lsn: 0x11n, seq: 1 }) < 0);
    assert.equal(parsePosition('garbage'), undefined);
  });

  it('moves a task forward by chunk marks, never back, and finishes it', () => {
    const state = emptyState();
    state.tasks.push({
      id: 't',
      table: 'public.a',
      kind: 'initial',
      lastKey: null,
      chunks: 0,
      rows: 0,
      startedAt: 0,
    });
    applyChunkMark(state, { task: 't', chunk: 2, lastKey: ['20'], rows: 20, done: false });
    applyChunkMark(state, { task: 't', chunk: 1, lastKey: ['10'], rows: 10, done: false });
    assert.deepEqual(state.tasks[0]!.lastKey, ['20']);
    applyChunkMark(state, { task: 't', chunk: 3, lastKey: ['25'], rows: 25, done: true });
    assert.deepEqual(state.tasks, []);
    assert.deepEqual(state.snapshotted, ['public.a']);
  });
});

describe('source configuration', () => {
  it('fills defaults, names the topic, slot and publication, and parses again unchanged', () => {
    const config = postgresCdcSchema.parse({
      type: 'postgres_cdc',
      database: 'shop',
      user: 'cdc',
      tables: ['public.orders'],
      heartbeat_interval: '5s',
    });
    assert.equal(config.heartbeat_interval, 5000);
    assert.deepEqual(postgresCdcSchema.parse(config), config);
    assert.deepEqual(resolvedNames('shop-eu', config), {
      topic: 'cdc.shop-eu',
      slot: 'tributary_shop_eu',
      publication: 'tributary_shop_eu',
    });
    assert.throws(() => postgresCdcSchema.parse({ ...config, tables: ['orders'] }));
  });
});

describe('docs/cdc.md', () => {
  it('documents every key of sources/*.yaml (the generated reference covers pipelines and tributary.yaml)', async () => {
    const { readFileSync } = await import('node:fs');
    const text = readFileSync(new URL('../../../docs/cdc.md', import.meta.url), 'utf8');
    const keys: string[] = [];
    for (const [key, value] of Object.entries(postgresCdcSchema.shape)) {
      const inner = (value as { unwrap?: () => unknown }).unwrap?.() ?? value;
      const shape = (inner as { shape?: Record<string, unknown> }).shape;
      if (shape && key !== 'type') keys.push(...Object.keys(shape).map((k) => `${key}.${k}`));
      else keys.push(key);
    }
    const missing = keys.filter((key) => key !== 'description' && !text.includes(`\`${key}\``));
    assert.deepEqual(missing, []);
  });
});
