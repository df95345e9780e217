/**
 * Integers beyond ±2^53 (64-bit ids, snowflakes, uint64) through real pipelines, end to end: from the log
 * through each transform into each sink, read back from the sink (DuckDB over the Iceberg table, the file,
 * the webhook's request body, PostgreSQL, the DLQ table). Every digit must arrive as it was sent.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import type { Catalog } from '../../src/catalog/catalog.ts';
import { buildPipeline, openProjectLog, pipelineSchema, projectResources } from '../../src/components.ts';
import type { PipelineResources } from '../../src/core/pipeline/components.ts';
import { loadProject, type Project } from '../../src/core/project.ts';
import type { Engine } from '../../src/iceberg/duckdb.ts';
import { QueryEngine } from '../../src/query/query-engine.ts';
import { useService } from '../services/index.ts';

const postgres = await useService('postgres');
const logger = pino({ level: 'silent' });

/**
 * Two events whose big integers round to the same double (9007199254740993 and 9007199254740992 are both
 * 2^53 as a double; 1234567890123456789 and …788 both 1234567890123456768), and int64's limit; topic `events`.
 */
const EVENTS = [
  '{"id": 9007199254740993, "snowflake": 1234567890123456789, "min": -9223372036854775808, "text": "1234567890123456789", "email": "ada@example.com", "n": 1, "ts": "2026-11-23T10:00:00Z"}',
  '{"id": 9007199254740992, "snowflake": 1234567890123456788, "min": -9223372036854775807, "text": "1234567890123456788", "email": "bob@example.com", "n": 2, "ts": "2026-11-23T11:00:00Z"}',
];

/** Integers up to int64's limits, and beyond (uint64's limit; 38 digits, decimal(38, 0)'s); topic `beyond`. */
const BEYOND = [
  '{"n": 1, "id": 9007199254740993, "min": -9223372036854775808, "huge": 18446744073709551615}',
  '{"n": 2, "id": 1234567890123456789, "min": 9223372036854775807, "huge": -99999999999999999999999999999999999999}',
];

/**
 * Numbers the columns of t.overflow (overflow.schema.json: n int, i int, l long, d decimal(9, 2), w
 * decimal(38, 0)) cannot hold, beside numbers they can, in one batch; topic `overflow`.
 */
const OVERFLOW = [
  '{"n": 1, "i": 2147483647, "l": 9223372036854775807, "d": 9999999.99, "w": 99999999999999999999999999999999999999}',
  '{"n": 2, "l": 92233720368547758070}',
  '{"n": 3, "i": 2147483648}',
  '{"n": 4, "d": 123456789.123}',
  '{"n": 5, "w": -123456789012345678901234567890123456789}',
  '{"n": 6, "i": -2147483648, "l": -9223372036854775808, "d": 0.125, "w": 18446744073709551615}',
];

describe('integers beyond ±2^53', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-big-integers-'));
  const bodies: string[] = [];
  let server: Server;
  let project: Project;
  let catalog: Catalog;
  let engine: Engine;
  let resources: PipelineResources | undefined;
  /** Pipelines that stopped with an error, by name. */
  const failures = new Map<string, unknown>();
  const pgTable = `big_integers_${randomUUID().replaceAll('-', '').slice(0, 12)}`;

  /** Writes pipelines/<name>.yaml reading `topic`. */
  const pipeline = (name: string, lines: readonly string[], topic = 'events') =>
    writeFileSync(
      path.join(root, 'pipelines', `${name}.yaml`),
      [`source: {type: topic, topic: ${topic}}`, ...lines, 'batch: {interval: 10ms}', ''].join('\n'),
    );

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        bodies.push(body);
        res.writeHead(200).end('{}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;

    writeFileSync(
      path.join(root, 'tributary.yaml'),
      'project: big\nlog: {backend: embedded, partitions: 1}\n',
    );
    mkdirSync(path.join(root, 'pipelines'));
    writeFileSync(
      path.join(root, 'ada-only.schema.json'),
      JSON.stringify({ type: 'object', properties: { email: { pattern: '^ada@' } } }),
    );
    writeFileSync(
      path.join(root, 'overflow.schema.json'),
      JSON.stringify({
        fields: [
          { name: 'n', type: 'int', required: true },
          { name: 'i', type: 'int' },
          { name: 'l', type: 'long' },
          { name: 'd', type: 'decimal(9, 2)' },
          { name: 'w', type: 'decimal(38, 0)' },
        ],
      }),
    );
    pipeline('beyond', ['sinks: [{type: iceberg, table: t.beyond, partition: ""}]'], 'beyond');
    // Into columns too small for some numbers: the records' bytes, and (cast) their values serialized again.
    for (const [name, transforms] of [
      ['overflow', []],
      ['overflow-cast', ['transforms: [{type: cast, fields: {n: integer}}]']],
    ] as const)
      pipeline(
        name,
        [
          ...transforms,
          `sinks: [{type: iceberg, table: t.${name.replace('-', '_')}, schema: overflow.schema.json, partition: ""}]`,
          'dlq: {table: t._dlq}',
        ],
        'overflow',
      );
    pipeline(
      'queried-beyond',
      [
        'transforms: [{type: sql, query: "select n, huge::hugeint as huge, huge::hugeint + 1 as more from batch"}]',
        'sinks: [{type: iceberg, table: t.queried_beyond, partition: ""}]',
      ],
      'beyond',
    );
    pipeline('masked', [
      'transforms: [{type: mask, salt: "0123456789abcdef", fields: {email: hash, snowflake: hash}}]',
      'sinks: [{type: iceberg, table: t.masked, partition: ""}]',
    ]);
    pipeline('queried', [
      'transforms: [{type: sql, query: "select id, snowflake, snowflake + 1 as next from batch"}]',
      'sinks: [{type: iceberg, table: t.queried, partition: ""}]',
    ]);
    pipeline('cast', [
      'transforms: [{type: cast, fields: {text: integer, snowflake: string}}]',
      'sinks: [{type: iceberg, table: t.cast, partition: ""}]',
    ]);
    pipeline('filtered', [
      'transforms: [{type: filter, where: [{field: id, gt: 9007199254740992}]}]',
      'sinks: [{type: file, path: filtered.ndjson}]',
    ]);
    pipeline('filtered-equals', [
      'transforms: [{type: filter, where: [{field: snowflake, equals: 1234567890123456788}]}]',
      'sinks: [{type: file, path: filtered-equals.ndjson}]',
    ]);
    pipeline('deduped', [
      'transforms: [{type: dedupe, key: [snowflake], window: 1h}]',
      'sinks: [{type: file, path: deduped.ndjson}]',
    ]);
    pipeline('file', ['sinks: [{type: file, path: file.ndjson}]']);
    pipeline('webhook', [`sinks: [{type: webhook, url: "http://127.0.0.1:${port}/hook"}]`]);
    // validate into Iceberg: values decoded for validate alone (with plain JSON.parse), sinks and DLQ from the bytes.
    pipeline('rejected', [
      'transforms: [{type: validate, schema: ada-only.schema.json}]',
      'sinks: [{type: iceberg, table: t.rejected, partition: ""}]',
      'dlq: {table: t._dlq}',
    ]);
    const url = postgres.info?.url;
    if (url !== undefined) {
      const sink = (table: string) => `sinks: [{type: postgres, url: "${url}", table: ${table}}]`;
      pipeline('postgres', [sink(pgTable)]);
      pipeline('postgres-beyond', [sink(`${pgTable}_beyond`)], 'beyond');
    }

    project = loadProject(root, { pipelineSchema });
    const log = await openProjectLog(project);
    for (const [topic, texts] of [
      ['events', EVENTS],
      ['beyond', BEYOND],
      ['overflow', OVERFLOW],
    ] as const) {
      await log.ensureTopic(topic, { partitions: 1 });
      await log.append(
        topic,
        texts.map((text) => ({ value: new TextEncoder().encode(text) })),
      );
    }
    for (const name of project.pipelines.keys()) {
      const { runner, close } = await buildPipeline(project, name, { log, logger, exitWhenIdle: true });
      try {
        await runner.run();
      } catch (error) {
        failures.set(name, error);
      } finally {
        await close();
      }
    }
    await log.close();
    resources = projectResources(project);
    catalog = await resources.get<Catalog>('catalog');
    engine = await resources.get<Engine>('engine');
  });

  after(async () => {
    await resources?.closeAll();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(root, { recursive: true, force: true });
  });

  /** The rows of a query, once pipeline `name` is known to have run to the end. */
  const query = async (name: string, sql: string) => {
    ran(name);
    return (await new QueryEngine(catalog, engine).query(sql)).rows;
  };
  const ran = (name: string) => assert.equal(failures.get(name), undefined, `pipeline ${name} failed`);
  const lines = (name: string, file: string) => {
    ran(name);
    return readFileSync(path.join(root, file), 'utf8')
      .split('\n')
      .filter((line) => line !== '');
  };

  it('iceberg without transforms (the raw bytes path): longs exact, decimal(38, 0) inferred beyond int64', async () => {
    assert.deepEqual(
      await query(
        'beyond',
        `select id::varchar as id, min::varchar as min, huge::varchar as huge, typeof(id) as id_type,
                typeof(huge) as huge_type
           from t.beyond order by n`,
      ),
      [
        {
          id: '9007199254740993',
          min: '-9223372036854775808',
          huge: '18446744073709551615',
          id_type: 'BIGINT',
          huge_type: 'DECIMAL(38,0)',
        },
        {
          id: '1234567890123456789',
          min: '9223372036854775807',
          huge: '-99999999999999999999999999999999999999',
          id_type: 'BIGINT',
          huge_type: 'DECIMAL(38,0)',
        },
      ],
    );
  });

  it('mask: the other fields keep every digit, and a hash is of the exact digits', async () => {
    const rows = await query('masked', 'select id::varchar as id, snowflake from t.masked order by n');
    assert.deepEqual(
      rows.map((r) => r.id),
      ['9007199254740993', '9007199254740992'],
    );
    const { createHmac } = await import('node:crypto');
    const hash = (text: string) => createHmac('sha256', '0123456789abcdef').update(text).digest('hex');
    assert.deepEqual(
      rows.map((r) => r.snowflake),
      [hash('1234567890123456789'), hash('1234567890123456788')],
    );
  });

  it('sql: DuckDB sees the exact values and its BIGINT results come back exact', async () => {
    assert.deepEqual(
      await query(
        'queried',
        'select id::varchar as id, snowflake::varchar as snowflake, next::varchar as next, typeof(next) as type from t.queried order by id',
      ),
      [
        {
          id: '9007199254740992',
          snowflake: '1234567890123456788',
          next: '1234567890123456789',
          type: 'BIGINT',
        },
        {
          id: '9007199254740993',
          snowflake: '1234567890123456789',
          next: '1234567890123456790',
          type: 'BIGINT',
        },
      ],
    );
  });

  it('sql: integers beyond int64 reach the query exactly, and its HUGEINT results come back exact', async () => {
    assert.deepEqual(
      await query(
        'queried-beyond',
        'select huge::varchar as huge, more::varchar as more, typeof(more) as type from t.queried_beyond order by n',
      ),
      [
        { huge: '18446744073709551615', more: '18446744073709551616', type: 'DECIMAL(38,0)' },
        {
          huge: '-99999999999999999999999999999999999999',
          more: '-99999999999999999999999999999999999998',
          type: 'DECIMAL(38,0)',
        },
      ],
    );
  });

  it('cast: numeric text to integer and a big integer to string are exact', async () => {
    assert.deepEqual(
      await query(
        'cast',
        'select text::varchar as text, typeof(text) as type, snowflake from t.cast order by n',
      ),
      [
        { text: '1234567890123456789', type: 'BIGINT', snowflake: '1234567890123456789' },
        { text: '1234567890123456788', type: 'BIGINT', snowflake: '1234567890123456788' },
      ],
    );
  });

  it('filter: gt compares the exact value', () => {
    assert.deepEqual(
      lines('filtered', 'filtered.ndjson').map((line) => line.match(/"id":(-?\d+)/)?.[1]),
      ['9007199254740993'],
    );
  });

  it('filter: equals compares with the exact number written in the pipeline file', () => {
    assert.deepEqual(
      lines('filtered-equals', 'filtered-equals.ndjson').map(
        (line) => line.match(/"snowflake":(-?\d+)/)?.[1],
      ),
      ['1234567890123456788'],
    );
  });

  it('dedupe: keys that differ past 2^53 are different keys', () => {
    assert.deepEqual(
      lines('deduped', 'deduped.ndjson').map((line) => line.match(/"snowflake":(-?\d+)/)?.[1]),
      ['1234567890123456789', '1234567890123456788'],
    );
  });

  it('file sink: each line holds the digits sent', () => {
    assert.deepEqual(
      lines('file', 'file.ndjson').map((line) => JSON.stringify(JSON.parse(line, exact))),
      EVENTS.map((text) => JSON.stringify(JSON.parse(text, exact))),
    );
  });

  it('webhook sink: the request body holds the digits sent', () => {
    ran('webhook');
    const records = bodies.flatMap((body) => (JSON.parse(body, exact) as { records: unknown[] }).records);
    assert.deepEqual(
      records.map((r) => JSON.stringify(r)),
      EVENTS.map((text) => JSON.stringify(JSON.parse(text, exact))),
    );
  });

  it('DLQ: the payload of a rejected record holds the digits sent', async () => {
    const rows = await query('rejected', `select payload from t._dlq where pipeline = 'rejected'`);
    assert.deepEqual(
      rows.map((r) => JSON.stringify(JSON.parse(r.payload as string, exact))),
      [JSON.stringify(JSON.parse(EVENTS[1]!, exact))],
    );
    assert.deepEqual(
      await query('rejected', 'select id::varchar as id, snowflake::varchar as snowflake from t.rejected'),
      [{ id: '9007199254740993', snowflake: '1234567890123456789' }],
    );
  });

  it('iceberg: a number its column cannot hold sends that record to the DLQ, saying what to do; the rest are written', async () => {
    for (const name of ['overflow', 'overflow-cast']) {
      const table = `t.${name.replace('-', '_')}`;
      const errors = (
        await query(name, `select "offset", error from t._dlq where pipeline = '${name}' order by "offset"`)
      ).map((r) => `${String(r.offset)}: ${String(r.error)}`);
      const hint = (wider: string, type: string, column: string) =>
        `widen the column to ${wider} (tributary tables evolve ${table} --widen ${column}:${wider}, as Iceberg allows ${type} → ${wider}), then replay the record (tributary dlq replay ${name}); or filter or change them in a transform`;
      assert.deepEqual(
        errors,
        [
          '1: column l is long (64-bit); 92233720368547758070 does not fit — Iceberg cannot widen a long: give such values a decimal(38, 0) column (create the table from a schema file that says so), or filter or change them in a transform',
          `2: column i is int (32-bit); 2147483648 does not fit — ${hint('long', 'int', 'i')}`,
          `3: column d is decimal(9, 2) (at most 7 digits before the point); 123456789.123 does not fit — ${hint('decimal(38, 2)', 'decimal(9, 2)', 'd')}`,
          '4: column w is decimal(38, 0) (at most 38 digits); -123456789012345678901234567890123456789 does not fit — no Iceberg number holds it exactly: give such values a string column (or double, which rounds them), or filter or change them in a transform',
        ],
        name,
      );
      assert.deepEqual(
        await query(
          name,
          `select n, i, l::varchar as l, d::varchar as d, w::varchar as w from ${table} order by n`,
        ),
        [
          { n: 1, i: 2147483647, l: '9223372036854775807', d: '9999999.99', w: '9'.repeat(38) },
          // Digits past the scale are rounded (half away from zero).
          { n: 6, i: -2147483648, l: '-9223372036854775808', d: '0.13', w: '18446744073709551615' },
        ],
        `${name}: the other records of the batch are written`,
      );
    }
  });

  it('postgres sink: bigint and numeric columns hold every digit', { skip: postgres.skip }, async () => {
    const client = new pg.Client({ connectionString: postgres.info!.url });
    await client.connect();
    try {
      ran('postgres');
      ran('postgres-beyond');
      const types = await client.query<{ column_name: string; data_type: string }>(
        `select column_name, data_type from information_schema.columns
          where table_name = $1 and column_name in ('id', 'snowflake', 'min') order by column_name`,
        [pgTable],
      );
      assert.deepEqual(
        types.rows.map((r) => `${r.column_name} ${r.data_type}`),
        ['id bigint', 'min bigint', 'snowflake bigint'],
      );
      const { rows } = await client.query(
        `select id::text, snowflake::text, min::text from ${pgTable} order by n`,
      );
      assert.deepEqual(rows, [
        {
          id: '9007199254740993',
          snowflake: '1234567890123456789',
          min: '-9223372036854775808',
        },
        {
          id: '9007199254740992',
          snowflake: '1234567890123456788',
          min: '-9223372036854775807',
        },
      ]);
      const beyond = await client.query(
        `select pg_typeof(id)::text as id_type, id::text, pg_typeof(huge)::text as huge_type, huge::text
           from ${pgTable}_beyond order by n`,
      );
      assert.deepEqual(beyond.rows, [
        { id_type: 'bigint', id: '9007199254740993', huge_type: 'numeric', huge: '18446744073709551615' },
        {
          id_type: 'bigint',
          id: '1234567890123456789',
          huge_type: 'numeric',
          huge: '-99999999999999999999999999999999999999',
        },
      ]);
    } finally {
      await client.query(`drop table if exists ${pgTable}, ${pgTable}_beyond`);
      await client.end();
    }
  });
});

/** A reviver that keeps integer literals as written (for comparing JSON texts by their numbers' digits). */
function exact(_key: string, value: unknown, context?: { source?: string }): unknown {
  return typeof value === 'number' && context?.source !== undefined && /^-?\d+$/.test(context.source)
    ? (JSON as unknown as { rawJSON: (text: string) => unknown }).rawJSON(context.source)
    : value;
}
