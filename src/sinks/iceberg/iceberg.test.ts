/**
 * The Iceberg sink's staging: records that carry their original bytes (`raw`, what the runtime passes on
 * when no transform can change a value) must land exactly as the same records serialized from their
 * values, bad values going to the DLQ with the same reasons.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseTableIdentifier } from '../../catalog/identifier.ts';
import type { Catalog } from '../../catalog/catalog.ts';
import { openTestCatalog, type TestCatalog } from '../../catalog/test-support.ts';
import { parseJsonExact } from '../../core/json.ts';
import { createLogger } from '../../core/logger.ts';
import { COLUMN_TYPES_HEADER } from '../../core/pipeline/column-types.ts';
import { createResources } from '../../core/pipeline/components.ts';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import type { Engine } from '../../iceberg/duckdb.ts';
import { updateSchema } from '../../iceberg/operations/evolve.ts';
import { planFiles, planScan, scanSql } from '../../iceberg/scan.ts';
import { describeType, type NestedField } from '../../iceberg/types.ts';
import type { Log } from '../../log/log.ts';
import { committedPositions, IcebergSink, icebergSinkDefinition, icebergSinkSchema } from './iceberg.ts';

let testbed: TestCatalog;
let dir: string;
let catalog: Catalog;
let engine: Engine;
let tables = 0;

before(async () => {
  testbed = await openTestCatalog({ prefix: 'tributary-iceberg-sink-test-' });
  ({ dir, catalog, engine } = testbed);
});

after(() => testbed.close());

const encoder = new TextEncoder();

/** Records from JSON texts at offsets from `from`; with `raw`, each keeps its text's bytes as the runtime would. */
function records(texts: readonly string[], raw: boolean, from = 0): PipelineRecord[] {
  return texts.map((text, i) => ({
    // The runtime decodes with TextDecoder, which drops a byte-order mark, and reads integers exactly.
    value: parseJsonExact(text.replace(/^\uFEFF/, '')) as Record<string, unknown>,
    key: null,
    partition: 0,
    offset: from + i,
    timestamp: 0,
    headers: {},
    ...(raw ? { raw: encoder.encode(text) } : {}),
  }));
}

/** What `sql` reads from the current snapshot of `table` (`from`: the table's scan), as JSON rows. */
async function queryTable(table: string, sql: (from: string) => string) {
  const loaded = await catalog.loadTable(parseTableIdentifier(table));
  const plan = await planScan(loaded.metadata, loaded.storage);
  return (
    await engine.connection.runAndReadAll(sql(scanSql(plan, await loaded.files.readable(planFiles(plan)))))
  ).getRowObjectsJson();
}

/** A sink of pipeline p on topic events writing `table`, configured with `config` (type and table added). */
function sinkOf(table: string, config: Record<string, unknown> = {}): IcebergSink {
  return new IcebergSink({
    name: 'iceberg',
    config: icebergSinkSchema.parse({ type: 'iceberg', table, ...config }),
    pipeline: 'p',
    topic: 'events',
    projectRoot: dir,
    catalog: async () => catalog,
    engine: async () => engine,
  });
}

/** Writes the texts through a new sink and table; returns the rows (sorted by id) and the DLQ reasons. */
async function write(texts: readonly string[], raw: boolean, partition = 'day(ts)') {
  const table = `test.t${tables++}`;
  const sink = sinkOf(table, { partition });
  await sink.open();
  // The first record of each batch fixes the inferred types.
  const result = await sink.write({ records: records(texts, raw), positions: new Map([[0, texts.length]]) });
  await sink.close();
  const rows = await queryTable(
    table,
    (from) => `select * exclude (ts), epoch_us(ts) as ts from ${from} order by id`,
  );
  return {
    rows,
    rejected: (result.rejected ?? []).map((r) => `${r.record.offset}: ${r.error}`),
  };
}

const texts = [
  '{"id": 1, "ts": "2026-11-23T10:00:00Z", "n": 5, "name": "ada", "tags": ["a", "b"]}',
  // Whitespace and a byte-order mark before the object, an escaped line break inside a string.
  '\uFEFF  {"id": 2, "ts": "2026-11-24T10:00:00Z", "n": 5.0, "name": "line\\nbreak"}',
  // Spread over lines: cannot be one NDJSON line as it is.
  '{\n  "id": 3,\n  "ts": "2026-11-24T11:00:00Z",\n  "n": 7\n}',
  // Looks like a timestamp (so the column is inferred as one) but is no date.
  '{"id": 4, "ts": "2026-02-30T10:00:00Z", "n": 1, "name": "bad"}',
  '{"id": 5, "ts": "2026-11-25T00:00:00Z", "n": -2, "name": "\\u00e9t\\u00e9", "extra": {"deep": true}}',
  '{ }',
];

describe('iceberg sink staging', () => {
  it('writes raw bytes as it writes serialized values', async () => {
    const serialized = await write(texts, false);
    const raw = await write(texts, true);
    assert.deepEqual(raw, serialized);
    assert.deepEqual(raw.rejected, ['3: ts: cannot read 2026-02-30T10:00:00Z as timestamptz']);
    const at = (iso: string) => String(BigInt(Date.parse(iso)) * 1000n);
    assert.deepEqual(raw.rows, [
      { id: '1', n: '5', name: 'ada', tags: ['a', 'b'], extra: null, ts: at('2026-11-23T10:00:00Z') },
      { id: '2', n: '5', name: 'line\nbreak', tags: null, extra: null, ts: at('2026-11-24T10:00:00Z') },
      { id: '3', n: '7', name: null, tags: null, extra: null, ts: at('2026-11-24T11:00:00Z') },
      { id: '5', n: '-2', name: 'été', tags: null, extra: { deep: true }, ts: at('2026-11-25T00:00:00Z') },
      { id: null, n: null, name: null, tags: null, extra: null, ts: null },
    ]);
  });

  it('falls back to serializing when a raw object repeats a key', async () => {
    const repeated = [
      '{"id": 1, "ts": "2026-11-23T10:00:00Z", "name": "first"}',
      '{"id": 2, "ts": "2026-11-23T10:00:00Z", "name": "first", "name": "last"}',
    ];
    const raw = await write(repeated, true, '');
    assert.deepEqual(raw.rejected, []);
    assert.deepEqual(
      raw.rows.map((r) => r.name),
      ['first', 'last'],
    );
  });
});

describe('numbers a column cannot hold', () => {
  const fields: NestedField[] = [
    { id: 1, name: 'n', type: 'int', required: true },
    { id: 2, name: 'i', type: 'int', required: false },
    { id: 3, name: 'l', type: 'long', required: false },
    { id: 4, name: 'd', type: 'decimal(9, 2)', required: false },
    { id: 5, name: 'w', type: 'decimal(38, 0)', required: false },
  ];
  const batch = [
    '{"n": 1, "i": 2147483647, "l": 9223372036854775807, "d": 1234567.125, "w": 99999999999999999999999999999999999999}',
    '{"n": 2, "l": 92233720368547758070}',
    '{"n": 3, "i": -2147483649}',
    '{"n": 4, "i": 9223372036854775808}',
    '{"n": 5, "d": 123456789.123}',
    '{"n": 6, "w": 123456789012345678901234567890123456789}',
    `{"n": 7, "l": ${'9'.repeat(60)}}`,
    '{"n": 8, "l": 1.5}',
    '{"n": 9, "i": -2147483648, "l": -9223372036854775808, "d": "-9999999.99", "w": -1}',
    '{"n": 10, "d": -0.125}',
  ];
  const widen = (wider: string, type: string, column: string, table: string) =>
    `widen the column to ${wider} (tributary tables evolve ${table} --widen ${column}:${wider}, as Iceberg allows ${type} → ${wider}), then replay the record (tributary dlq replay p); or filter or change them in a transform`;
  const decimalColumn =
    'give such values a decimal(38, 0) column (create the table from a schema file that says so), or filter or change them in a transform';
  const noNumber =
    'no Iceberg number holds it exactly: give such values a string column (or double, which rounds them), or filter or change them in a transform';

  const sinkFor = (table: string, columns: NestedField[] = fields) =>
    new IcebergSink({
      name: 'iceberg',
      config: icebergSinkSchema.parse({ type: 'iceberg', table }),
      fixedSchema: { type: 'struct', fields: columns },
      pipeline: 'p',
      topic: 'events',
      projectRoot: dir,
      catalog: async () => catalog,
      engine: async () => engine,
    });
  /** Writes the texts into `table` through a new sink; the DLQ's reasons, as "offset: reason". */
  const rejectedBy = async (
    table: string,
    texts: readonly string[],
    raw: boolean,
    columns: NestedField[] = fields,
  ) => {
    const sink = sinkFor(table, columns);
    await sink.open();
    const result = await sink.write({
      records: records(texts, raw),
      positions: new Map([[0, texts.length]]),
    });
    await sink.close();
    return (result.rejected ?? []).map((r) => `${r.record.offset}: ${r.error}`);
  };
  const rowsOf = async (table: string) => {
    return await queryTable(
      table,
      (from) =>
        `select n, i::varchar as i, l::varchar as l, d::varchar as d, w::varchar as w from ${from} order by n`,
    );
  };

  it('sends only those records to the DLQ, saying which column, its type, the number and what to do', async () => {
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const rejected = await rejectedBy(table, batch, raw);
      assert.deepEqual(
        rejected,
        [
          `1: column l is long (64-bit); 92233720368547758070 does not fit — Iceberg cannot widen a long: ${decimalColumn}`,
          `2: column i is int (32-bit); -2147483649 does not fit — ${widen('long', 'int', 'i', table)}`,
          `3: column i is int (32-bit); 9223372036854775808 does not fit — long, the one type Iceberg widens an int to, cannot hold it either: ${decimalColumn}`,
          `4: column d is decimal(9, 2) (at most 7 digits before the point); 123456789.123 does not fit — ${widen('decimal(38, 2)', 'decimal(9, 2)', 'd', table)}`,
          `5: column w is decimal(38, 0) (at most 38 digits); 123456789012345678901234567890123456789 does not fit — ${noNumber}`,
          `6: column l is long (64-bit); ${'9'.repeat(40)}… (60 digits) does not fit — ${noNumber}`,
          '7: l: cannot read 1.5 as long',
        ],
        `raw: ${raw}`,
      );
      assert.deepEqual(
        await rowsOf(table),
        [
          // Digits past the scale are rounded (half away from zero), as SQL engines do when they insert.
          { n: 1, i: '2147483647', l: '9223372036854775807', d: '1234567.13', w: '9'.repeat(38) },
          { n: 9, i: '-2147483648', l: '-9223372036854775808', d: '-9999999.99', w: '-1' },
          { n: 10, i: null, l: null, d: '-0.13', w: null },
        ],
        `raw: ${raw}: the records of the batch that fit are written`,
      );
    }
  });

  it('sends a record whose map key its type cannot hold to the DLQ, not the whole batch', async () => {
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const sink = new IcebergSink({
        name: 'iceberg',
        config: icebergSinkSchema.parse({ type: 'iceberg', table }),
        fixedSchema: {
          type: 'struct',
          fields: [
            { id: 1, name: 'n', type: 'int', required: true },
            {
              id: 2,
              name: 'm',
              required: false,
              type: {
                type: 'map',
                'key-id': 3,
                key: 'int',
                'value-id': 4,
                value: 'long',
                'value-required': false,
              },
            },
          ],
        },
        pipeline: 'p',
        topic: 'events',
        projectRoot: dir,
        catalog: async () => catalog,
        engine: async () => engine,
      });
      await sink.open();
      const texts = [
        '{"n": 1, "m": {"1": 5, "-2147483648": 6}}',
        '{"n": 2, "m": {"2147483648": 5}}',
        '{"n": 3, "m": {"b": 5}}',
        '{"n": 4, "m": {}}',
      ];
      // DuckDB failed the whole statement on such a key, even in try_cast: the batch could never be written.
      const result = await sink.write({ records: records(texts, raw), positions: new Map([[0, 4]]) });
      await sink.close();
      assert.deepEqual(
        (result.rejected ?? []).map((r) => `${r.record.offset}: ${r.error}`),
        ['1: m: cannot read {"2147483648":5} as map', '2: m: cannot read {"b":5} as map'],
        `raw: ${raw}`,
      );
      const rows = await queryTable(
        table,
        (from) => `select n, map_entries(m)::varchar as m from ${from} order by n`,
      );
      assert.deepEqual(
        rows,
        [
          { n: 1, m: "[{'key': 1, 'value': 5}, {'key': -2147483648, 'value': 6}]" },
          { n: 4, m: '[]' },
        ],
        `raw: ${raw}`,
      );
    }
  });

  it('sends a record to the DLQ for a value inside a struct, list or map its type cannot hold', async () => {
    const nested: NestedField[] = [
      { id: 1, name: 'n', type: 'int', required: true },
      {
        id: 2,
        name: 's',
        required: false,
        type: {
          type: 'struct',
          fields: [
            { id: 3, name: 'x', type: 'long', required: false },
            { id: 4, name: 't', type: 'timestamptz', required: false },
            { id: 5, name: 'name', type: 'string', required: false },
          ],
        },
      },
      {
        id: 6,
        name: 'l',
        required: false,
        type: { type: 'list', 'element-id': 7, element: 'int', 'element-required': false },
      },
      {
        id: 8,
        name: 'm',
        required: false,
        type: {
          type: 'map',
          'key-id': 9,
          key: 'string',
          'value-id': 10,
          value: 'decimal(9, 2)',
          'value-required': false,
        },
      },
      {
        id: 11,
        name: 'ls',
        required: false,
        type: {
          type: 'list',
          'element-id': 12,
          element: { type: 'struct', fields: [{ id: 13, name: 'q', type: 'long', required: false }] },
          'element-required': false,
        },
      },
    ];
    const texts = [
      '{"n": 1, "s": {"x": 9223372036854775807, "t": "2026-11-23T10:00:00Z", "name": "a"}, "l": [1, -2147483648], "m": {"a": 1.125}, "ls": [{"q": 1}]}',
      '{"n": 2, "s": {"x": 92233720368547758070}}',
      '{"n": 3, "l": [1, 2147483648]}',
      '{"n": 4, "l": [1.5]}',
      '{"n": 5, "m": {"a": 1, "b": 123456789}}',
      '{"n": 6, "ls": [{"q": 1}, {"q": -92233720368547758070}]}',
      '{"n": 7, "s": {"t": "2026-02-30T10:00:00Z"}}',
      '{"n": 8, "s": {"x": null, "name": "b"}, "l": [null, 3], "m": {"b": null}, "ls": [null, {}]}',
      '{"n": 9, "s": {"x": "12", "name": 5}, "l": [5.0]}',
    ];
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const rejected = await rejectedBy(table, texts, raw, nested);
      // The cast made NULL of each (and 2 of 1.5), and the record was written so.
      assert.deepEqual(
        rejected,
        [
          `1: column s.x is long (64-bit); 92233720368547758070 does not fit — Iceberg cannot widen a long: ${decimalColumn}`,
          `2: column l.element is int (32-bit); 2147483648 does not fit — ${widen('long', 'int', 'l.element', table)}`,
          '3: l.element: cannot read 1.5 as int',
          `4: column m.value is decimal(9, 2) (at most 7 digits before the point); 123456789 does not fit — ${widen('decimal(38, 2)', 'decimal(9, 2)', 'm.value', table)}`,
          `5: column ls.element.q is long (64-bit); -92233720368547758070 does not fit — Iceberg cannot widen a long: ${decimalColumn}`,
          '6: s.t: cannot read 2026-02-30T10:00:00Z as timestamptz',
        ],
        `raw: ${raw}`,
      );
      const rows = await queryTable(
        table,
        (from) => `select n, s.x::varchar as x, s.name, l::varchar as l, m::varchar as m, ls::varchar as ls
             from ${from} order by n`,
      );
      assert.deepEqual(
        rows,
        [
          {
            n: 1,
            x: '9223372036854775807',
            name: 'a',
            l: '[1, -2147483648]',
            m: '{a=1.13}',
            ls: "[{'q': 1}]",
          },
          { n: 8, x: null, name: 'b', l: '[NULL, 3]', m: '{b=NULL}', ls: "[NULL, {'q': NULL}]" },
          { n: 9, x: '12', name: '5', l: '[5]', m: null, ls: null },
        ],
        `raw: ${raw}: the records of the batch that fit are written`,
      );
    }
  });

  it('sends a record to the DLQ for a struct given something other than an object, there or nested', async () => {
    const nested: NestedField[] = [
      { id: 1, name: 'n', type: 'int', required: true },
      {
        id: 2,
        name: 'address',
        required: false,
        type: {
          type: 'struct',
          fields: [
            { id: 3, name: 'street', type: 'string', required: false },
            { id: 4, name: 'zip', type: 'int', required: false },
          ],
        },
      },
      {
        id: 5,
        name: 'ls',
        required: false,
        type: {
          type: 'list',
          'element-id': 6,
          element: { type: 'struct', fields: [{ id: 7, name: 'q', type: 'string', required: false }] },
          'element-required': false,
        },
      },
      {
        id: 8,
        name: 'm',
        required: false,
        type: {
          type: 'map',
          'key-id': 9,
          key: 'string',
          'value-id': 10,
          value: { type: 'struct', fields: [{ id: 11, name: 'a', type: 'string', required: false }] },
          'value-required': false,
        },
      },
      {
        id: 12,
        name: 's',
        required: false,
        type: {
          type: 'struct',
          fields: [
            {
              id: 13,
              name: 'in ner',
              required: false,
              type: { type: 'struct', fields: [{ id: 14, name: 'x', type: 'string', required: false }] },
            },
          ],
        },
      },
    ];
    const texts = [
      '{"n": 1, "address": {"street": "Main St", "zip": 1}, "ls": [{"q": "a"}, null, {}], "m": {"k": {"a": "b"}, "j": null}, "s": {"in ner": {"x": "y"}}}',
      '{"n": 2, "address": "Main St 1"}',
      '{"n": 3, "address": 5}',
      '{"n": 4, "address": [1, 2]}',
      '{"n": 5, "ls": [{"q": "a"}, "b"]}',
      '{"n": 6, "m": {"k": {"a": "b"}, "j": 5}}',
      '{"n": 7, "s": {"in ner": true}}',
      '{"n": 8, "address": {}, "s": {}, "ls": [], "m": {}}',
      '{"n": 9, "address": null, "s": {"in ner": null}}',
    ];
    const what =
      'is not an object — send an object of its fields (or null) there, or filter or change such records in a transform';
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const rejected = await rejectedBy(table, texts, raw, nested);
      // The cast made a struct of NULLs of each, and the record was written so.
      assert.deepEqual(
        rejected,
        [
          `1: column address is a struct; "Main St 1" ${what}`,
          `2: column address is a struct; 5 ${what}`,
          `3: column address is a struct; [1,2] ${what}`,
          `4: column ls.element is a struct; "b" ${what}`,
          `5: column m.value is a struct; 5 ${what}`,
          `6: column s.in ner is a struct; true ${what}`,
        ],
        `raw: ${raw}`,
      );
      const rows = await queryTable(
        table,
        (from) => `select n, address::varchar as address, ls::varchar as ls, m::varchar as m, s::varchar as s
             from ${from} order by n`,
      );
      assert.deepEqual(
        rows,
        [
          {
            n: 1,
            address: "{'street': Main St, 'zip': 1}",
            ls: "[{'q': a}, NULL, {'q': NULL}]",
            m: "{k={'a': b}, j=NULL}",
            s: "{'in ner': {'x': y}}",
          },
          {
            n: 8,
            address: "{'street': NULL, 'zip': NULL}",
            ls: '[]',
            m: '{}',
            s: "{'in ner': NULL}",
          },
          { n: 9, address: null, ls: null, m: null, s: "{'in ner': NULL}" },
        ],
        `raw: ${raw}: the records of the batch that fit are written`,
      );
    }
  });

  it('sends a number beyond the float range to the DLQ rather than write Infinity (or NULL)', async () => {
    const floats: NestedField[] = [
      { id: 1, name: 'n', type: 'int', required: true },
      { id: 2, name: 'f', type: 'float', required: false },
      {
        id: 3,
        name: 's',
        required: false,
        type: { type: 'struct', fields: [{ id: 4, name: 'x', type: 'float', required: false }] },
      },
    ];
    const texts = [
      '{"n": 1, "f": 3.4e38, "s": {"x": -1.5}}',
      '{"n": 2, "f": 1e39}',
      '{"n": 3, "f": -1E39}',
      '{"n": 4, "f": 1e400}',
      '{"n": 5, "f": -1e400}',
      '{"n": 6, "s": {"x": 1e39}}',
      '{"n": 7, "f": "Infinity", "s": {"x": 1e-50}}',
      '{"n": 8, "f": "1e39"}',
    ];
    const noNumber =
      'no Iceberg number holds it: give such values a string column, or filter or change them in a transform';
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const rejected = await rejectedBy(table, texts, raw, floats);
      const toDouble = (column: string) => widen('double', 'float', column, table);
      // The cast made Infinity of each (1e400 from the parsed value: NULL), and the record was written so.
      assert.deepEqual(
        rejected,
        [
          `1: column f is float (32-bit, at most ±3.4e38); 1e+39 does not fit — ${toDouble('f')}`,
          `2: column f is float (32-bit, at most ±3.4e38); -1e+39 does not fit — ${toDouble('f')}`,
          `3: column f is float (32-bit, at most ±3.4e38); a number beyond ±1.8e308 does not fit — ${noNumber}`,
          `4: column f is float (32-bit, at most ±3.4e38); a number beyond ±1.8e308 does not fit — ${noNumber}`,
          `5: column s.x is float (32-bit, at most ±3.4e38); 1e+39 does not fit — ${toDouble('s.x')}`,
          `7: column f is float (32-bit, at most ±3.4e38); 1e39 does not fit — ${toDouble('f')}`,
        ],
        `raw: ${raw}`,
      );
      const rows = await queryTable(
        table,
        (from) => `select n, f::varchar as f, s.x::varchar as x from ${from} order by n`,
      );
      assert.deepEqual(
        rows,
        [
          { n: 1, f: '3.4e+38', x: '-1.5' },
          // Text that says Infinity is Infinity; a number too small for a float is 0, as it rounds.
          { n: 7, f: 'inf', x: '0.0' },
        ],
        `raw: ${raw}: the records of the batch that fit are written`,
      );
    }
  });

  it('sends a number beyond the double range to the DLQ rather than write Infinity (or NULL), there or nested', async () => {
    const doubles: NestedField[] = [
      { id: 1, name: 'n', type: 'int', required: true },
      { id: 2, name: 'd', type: 'double', required: false },
      {
        id: 3,
        name: 's',
        required: false,
        type: {
          type: 'struct',
          fields: [
            { id: 4, name: 'x', type: 'double', required: false },
            { id: 5, name: 'f', type: 'float', required: false },
          ],
        },
      },
      {
        id: 6,
        name: 'l',
        required: false,
        type: { type: 'list', 'element-id': 7, element: 'double', 'element-required': false },
      },
      {
        id: 8,
        name: 'm',
        required: false,
        type: {
          type: 'map',
          'key-id': 9,
          key: 'string',
          'value-id': 10,
          value: 'double',
          'value-required': false,
        },
      },
    ];
    // Halfway between the largest double and 2^1024: it and all above round to Infinity, all below to the largest.
    const halfway = 2n ** 1024n - 2n ** 970n;
    const texts = [
      '{"n": 1, "d": 1.7976931348623157e308, "s": {"x": -1.7976931348623157e308, "f": 1.5}, "l": [1.5], "m": {"a": 2.5}}',
      '{"n": 2, "d": 1e400}',
      '{"n": 3, "d": -1E999}',
      '{"n": 4, "d": 1.8e308}',
      '{"n": 5, "d": 1.7976931348623158e308}',
      '{"n": 6, "d": 1.7976931348623159e308}',
      `{"n": 7, "d": ${halfway}}`,
      `{"n": 8, "d": ${halfway - 1n}}`,
      '{"n": 9, "d": "1e400"}',
      '{"n": 10, "s": {"x": 1e400}}',
      '{"n": 11, "l": [1, -1e400]}',
      '{"n": 12, "m": {"a": 1, "b": 1e400}}',
      '{"n": 13, "s": {"f": 1e400}}',
      '{"n": 14, "d": "Infinity", "s": {"x": "-Infinity", "f": "NaN"}, "l": ["NaN"], "m": {"a": "inf"}}',
      '{"n": 15, "d": -0.0, "s": {"x": -0.0, "f": -0.0}, "l": [-0.0], "m": {"a": -0.0}}',
      '{"n": 16, "d": -0}',
    ];
    const beyond = (
      column: string,
      type = 'double (64-bit, at most ±1.8e308)',
      number = 'a number beyond ±1.8e308',
    ) =>
      `column ${column} is ${type}; ${number} does not fit — no Iceberg number holds it: give such values a string column, or filter or change them in a transform`;
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const rejected = await rejectedBy(table, texts, raw, doubles);
      // The cast made Infinity of each, and the record was written so; from the parsed value (JSON.parse reads
      // 1e400 as Infinity, JSON.stringify writes null), NULL.
      assert.deepEqual(
        rejected,
        [
          `1: ${beyond('d')}`,
          `2: ${beyond('d')}`,
          `3: ${beyond('d')}`,
          `5: ${beyond('d')}`,
          // An integer's digits are kept from the value too (parseJsonExact).
          `6: ${beyond('d', undefined, `${String(halfway).slice(0, 40)}… (309 digits)`)}`,
          `8: ${beyond('d')}`,
          `9: ${beyond('s.x')}`,
          `10: ${beyond('l.element')}`,
          `11: ${beyond('m.value')}`,
          `12: ${beyond('s.f', 'float (32-bit, at most ±3.4e38)')}`,
        ],
        `raw: ${raw}`,
      );
      const rows = await queryTable(
        table,
        (from) => `select n, d::varchar as d, s::varchar as s, l::varchar as l, m::varchar as m
             from ${from} order by n`,
      );
      const max = '1.7976931348623157e+308';
      assert.deepEqual(
        rows,
        [
          { n: 1, d: max, s: `{'x': -${max}, 'f': 1.5}`, l: '[1.5]', m: '{a=2.5}' },
          // Digits that round to the largest double are it.
          { n: 5, d: max, s: null, l: null, m: null },
          { n: 8, d: max, s: null, l: null, m: null },
          // Text that says Infinity or NaN is that.
          { n: 14, d: 'inf', s: "{'x': -inf, 'f': nan}", l: '[nan]', m: '{a=inf}' },
          // -0.0 keeps its sign; -0 is an integer to DuckDB's JSON reader, 0, but -0 to JSON.parse.
          { n: 15, d: '-0.0', s: "{'x': -0.0, 'f': -0.0}", l: '[-0.0]', m: '{a=-0.0}' },
          { n: 16, d: raw ? '0.0' : '-0.0', s: null, l: null, m: null },
        ],
        `raw: ${raw}: the records of the batch that fit are written`,
      );
    }
  });

  it("sends a record value's Infinity to the DLQ wherever it is, rather than write NULL; NaN is NaN", async () => {
    const columns: NestedField[] = [
      { id: 1, name: 'n', type: 'int', required: true },
      { id: 2, name: 'i', type: 'int', required: false },
      { id: 3, name: 'w', type: 'decimal(38, 0)', required: false },
      { id: 4, name: 's', type: 'string', required: false },
      { id: 5, name: 'x', type: 'double', required: false },
      {
        id: 6,
        name: 'l',
        required: false,
        type: { type: 'list', 'element-id': 7, element: 'long', 'element-required': false },
      },
    ];
    // As a transform leaves them: values, no bytes.
    const values: Array<Record<string, unknown>> = [
      { n: 1, i: Infinity },
      { n: 2, w: -Infinity },
      { n: 3, l: [1, Infinity] },
      { n: 4, i: NaN },
      { n: 5, x: NaN, s: 'kept', i: 7, l: [null, 2] },
      { n: 6, s: Infinity },
    ];
    const table = `test.t${tables++}`;
    const sink = sinkFor(table, columns);
    await sink.open();
    const result = await sink.write({
      records: values.map((value, offset) => ({
        value,
        key: null,
        partition: 0,
        offset,
        timestamp: 0,
        headers: {},
      })),
      positions: new Map([[0, values.length]]),
    });
    await sink.close();
    const rejected = (result.rejected ?? []).map((r) => `${r.record.offset}: ${r.error}`);
    // Before, JSON.stringify wrote null for each: NULL in the table. The reasons are those of the bytes 1e999.
    assert.deepEqual(rejected, [
      '0: i: cannot read 1e999 as int',
      '1: column w is decimal(38, 0) (at most 38 digits); -1e999 does not fit — no Iceberg number holds it exactly: give such values a string column (or double, which rounds them), or filter or change them in a transform',
      '2: l.element: cannot read 1e999 as long',
      '3: i: cannot read NaN as int',
    ]);
    const rows = await queryTable(
      table,
      (from) => `select n, i, w::varchar as w, s, x::varchar as x, l::varchar as l from ${from} order by n`,
    );
    assert.deepEqual(rows, [
      { n: 5, i: 7, w: null, s: 'kept', x: 'nan', l: '[NULL, 2]' },
      // A string column keeps a number's text, as the bytes' 1e400 is kept: Infinity's is 1e999.
      { n: 6, i: null, w: null, s: '1e999', x: null, l: null },
    ]);
  });

  it('writes them once the columns are widened as the reason says, by another engine meanwhile', async () => {
    const table = `test.t${tables++}`;
    const sink = sinkFor(table);
    await sink.open();
    const texts = ['{"n": 1, "i": -2147483649}', '{"n": 2, "d": 123456789.123}'];
    const first = await sink.write({ records: records(texts, true), positions: new Map([[0, 2]]) });
    assert.equal(first.rejected?.length, 2);
    // What pyiceberg's update_schema().update_column() or Spark's ALTER COLUMN … TYPE commit.
    await updateSchema(await catalog.loadTable(parseTableIdentifier(table)), [
      { kind: 'update-column-type', column: 'i', type: 'long' },
      { kind: 'update-column-type', column: 'd', type: 'decimal(38, 2)' },
    ]);
    // Replayed from the DLQ: the same records at later offsets.
    const replayed = records(texts, true).map((r) => ({ ...r, offset: r.offset + 2 }));
    const second = await sink.write({ records: replayed, positions: new Map([[0, 4]]) });
    await sink.close();
    assert.deepEqual(second.rejected ?? [], []);
    assert.deepEqual(await rowsOf(table), [
      { n: 1, i: '-2147483649', l: null, d: null, w: null },
      { n: 2, i: null, l: null, d: '123456789.12', w: null },
    ]);
  });
});

describe('upsert with delete_column', () => {
  it('deletes rows whose last record is marked, keeps the marker out of the table, raw or not', async () => {
    for (const raw of [true, false]) {
      const table = `test.t${tables++}`;
      const sink = sinkOf(table, { mode: 'upsert', key: ['id'], delete_column: '_deleted' });
      await sink.open();
      const first = [
        '{"id":1,"v":"a","_deleted":false}',
        '{"id":2,"v":"b","_deleted":false}',
        '{"id":3,"v":"c"}',
      ];
      await sink.write({ records: records(first, raw), positions: new Map([[0, 3]]) });
      const second = [
        '{"id":2,"v":"b","_deleted":true}',
        '{"id":3,"v":"x","_deleted":true}',
        '{"id":3,"v":"C","_deleted":false}',
        '{"id":4,"_deleted":true}',
      ];
      await sink.write({ records: records(second, raw, 3), positions: new Map([[0, 7]]) });
      await sink.close();
      const loaded = await catalog.loadTable(parseTableIdentifier(table));
      assert.deepEqual(
        loaded.schema.fields.map((f) => f.name),
        ['id', 'v'],
        'the marker is not a column',
      );
      const plan = await planScan(loaded.metadata, loaded.storage);
      const rows = (
        await engine.connection.runAndReadAll(
          `select id, v from ${scanSql(plan, await loaded.files.readable(planFiles(plan)))} order by id`,
        )
      ).getRowObjectsJson();
      assert.deepEqual(
        rows,
        [
          { id: '1', v: 'a' },
          { id: '3', v: 'C' },
        ],
        `raw: ${raw}`,
      );
    }
  });
});

describe('upsert deletions carrying the key alone', () => {
  it('deletes the row when a non-key column is required (a CDC delete without REPLICA IDENTITY FULL)', async () => {
    for (const marker of ['_deleted', 'deleted']) {
      const table = `test.t${tables++}`;
      const sinkFor = (deleteColumn: string | undefined) =>
        new IcebergSink({
          name: 'iceberg',
          config: icebergSinkSchema.parse({
            type: 'iceberg',
            table,
            mode: 'upsert',
            key: ['id'],
            ...(deleteColumn ? { delete_column: deleteColumn } : {}),
          }),
          fixedSchema: {
            type: 'struct',
            fields: [
              { id: 1, name: 'id', type: 'long' as const, required: true },
              { id: 2, name: 'email', type: 'string' as const, required: true },
              { id: 3, name: marker, type: 'boolean' as const, required: false },
            ],
          },
          pipeline: 'p',
          topic: 'events',
          projectRoot: dir,
          catalog: async () => catalog,
          engine: async () => engine,
        });
      // With `deleted`, the marker is a column of the table: created by a sink without delete_column (one
      // with it keeps the marker out of a table it creates, as with `_deleted`).
      const creator = sinkFor(marker === 'deleted' ? undefined : marker);
      await creator.open();
      const first = [`{"id":1,"email":"a@x","${marker}":false}`, `{"id":2,"email":"b@x"}`];
      await creator.write({ records: records(first, true), positions: new Map([[0, 2]]) });
      await creator.close();
      const sink = sinkFor(marker);
      await sink.open();
      const second = [`{"id":1,"${marker}":true}`, `{"id":2,"${marker}":false}`, `{"${marker}":true}`];
      const result = await sink.write({ records: records(second, true, 2), positions: new Map([[0, 5]]) });
      await sink.close();
      assert.deepEqual(
        (result.rejected ?? []).map((r) => r.error),
        ['email is required but missing', 'id is required but missing'],
        `${marker}: an update still needs its required columns, a deletion its key`,
      );
      const loaded = await catalog.loadTable(parseTableIdentifier(table));
      assert.equal(
        loaded.schema.fields.some((f) => f.name === marker),
        marker === 'deleted',
        `${marker} is a column of the table`,
      );
      const plan = await planScan(loaded.metadata, loaded.storage);
      const rows = (
        await engine.connection.runAndReadAll(
          `select id, email from ${scanSql(plan, await loaded.files.readable(planFiles(plan)))}`,
        )
      ).getRowObjectsJson();
      assert.deepEqual(rows, [{ id: '2', email: 'b@x' }], marker);
    }
  });
});

describe('empty batches', () => {
  it('skips committing an empty batch for a while, and commits its positions on flush', async () => {
    const table = `test.t${tables++}`;
    const sink = sinkOf(table);
    await sink.open();
    await sink.write({ records: records(['{"id":1}'], true), positions: new Map([[0, 1]]) });
    await sink.write({ records: [], positions: new Map([[0, 50]]) }); // all filtered out
    const stored = async () =>
      committedPositions(await catalog.loadTable(parseTableIdentifier(table)), 'p', 'events');
    assert.deepEqual(
      await stored(),
      new Map([[0, 1]]),
      'an empty batch right after a commit is not committed',
    );
    await sink.flush();
    assert.deepEqual(await stored(), new Map([[0, 50]]));
    await sink.flush(); // nothing left: no new snapshot
    assert.equal((await catalog.loadTable(parseTableIdentifier(table))).metadata.snapshots.length, 2);
    await sink.close();
  });
});

describe('two processes running one pipeline', () => {
  it('writes only the records past what the other committed, and never moves a position back', async () => {
    const table = `test.t${tables++}`;
    const events = (from: number, to: number, partition: number): PipelineRecord[] =>
      records(
        Array.from({ length: to - from }, (_, i) => `{"id": "${partition}-${from + i}"}`),
        true,
        from,
      ).map((r) => ({ ...r, partition }));
    const first = sinkOf(table);
    const second = sinkOf(table);
    await first.open();
    await first.write({ records: events(0, 2, 1), positions: new Map([[1, 2]]) });
    assert.deepEqual(await second.open(), new Map([[1, 2]]));
    // The first commits offsets 0–99 of partition 0 and 2–9 of partition 1; the second, which read the
    // table before, then offers 0–149 of partition 0 (its batch boundaries differ) with partition 1 at 2.
    await first.write({
      records: [...events(0, 100, 0), ...events(2, 10, 1)],
      positions: new Map([
        [0, 100],
        [1, 10],
      ]),
    });
    const prepared = await second.prepare(events(0, 150, 0));
    await second.write({
      records: events(0, 150, 0),
      positions: new Map([
        [0, 150],
        [1, 2],
      ]),
      prepared,
    });
    const rows = await queryTable(
      table,
      (from) => `select count(*) as n, count(distinct id) as ids from ${from}`,
    );
    assert.deepEqual(rows, [{ n: '160', ids: '160' }]);
    const loaded = await catalog.loadTable(parseTableIdentifier(table));
    assert.deepEqual(
      committedPositions(loaded, 'p', 'events'),
      new Map([
        [0, 150],
        [1, 10],
      ]),
    );
    await first.close();
    await second.close();
  });
});

describe('a table inferred from the data', () => {
  it('is made with the first records, not by batches that have none (all filtered out)', async () => {
    const table = `test.t${tables++}`;
    const sink = sinkOf(table);
    await sink.open();
    await sink.write({ records: [], positions: new Map([[0, 10]]) });
    await sink.flush(); // a pipeline stopping before any record came
    assert.equal(await catalog.tableExists(parseTableIdentifier(table)), false);
    const later = records(['{"id": 1, "name": "a"}'], true).map((r) => ({ ...r, offset: 10 }));
    await sink.write({ records: later, positions: new Map([[0, 11]]) });
    const loaded = await catalog.loadTable(parseTableIdentifier(table));
    assert.deepEqual(
      loaded.schema.fields.map((f) => f.name),
      ['id', 'name'],
    );
    assert.deepEqual(committedPositions(loaded, 'p', 'events'), new Map([[0, 11]]));
    await sink.close();
  });
});

describe('declared column types', () => {
  const declaring = (types: Record<string, unknown>, texts: readonly string[], from: number) =>
    records(texts, true, from).map((r) => ({
      ...r,
      headers: { [COLUMN_TYPES_HEADER]: JSON.stringify(types) },
    }));
  const columnTypes = async (table: string) =>
    Object.fromEntries(
      (await catalog.loadTable(parseTableIdentifier(table))).schema.fields.map((f) => [
        f.name,
        typeof f.type === 'string' ? f.type : describeType(f.type),
      ]),
    );

  it('makes and adds columns of the declared types, not those the values suggest, and writes the values so', async () => {
    const table = `test.t${tables++}`;
    const sink = sinkOf(table, { partition: '' });
    await sink.open();
    const first = { id: 'int', note: 'string', when: 'timestamp' };
    await sink.write({
      records: declaring(
        first,
        ['{"id": 1, "note": "2026-11-23", "when": "2026-11-23T10:11:12.5", "n": 1}'],
        0,
      ),
      positions: new Map([[0, 1]]),
    });
    // Declared: id int (not long), note string (not date), when timestamp; n, undeclared, inferred.
    assert.deepEqual(await columnTypes(table), { id: 'int', note: 'string', when: 'timestamp', n: 'long' });
    // n is a column already: a type declared for it now changes nothing.
    const later = {
      ...first,
      n: 'string',
      amount: 'decimal(10, 2)',
      uid: 'uuid',
      tags: { type: 'list', element: 'int' },
    };
    const result = await sink.write({
      records: [
        // A record without the header, and one declaring a type that is not one: inferred.
        ...records(['{"id": 2, "extra": 5}'], true, 1),
        ...declaring(
          { ...later, odd: 'no such type' },
          [
            '{"id": 3, "n": 7, "amount": "12.5", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "tags": [1, 2], "odd": "x"}',
          ],
          2,
        ),
        ...declaring(later, ['{"id": 4, "amount": null, "tags": null}'], 3),
      ],
      positions: new Map([[0, 4]]),
    });
    assert.deepEqual(result.rejected ?? [], []);
    assert.deepEqual(await columnTypes(table), {
      id: 'int',
      note: 'string',
      when: 'timestamp',
      n: 'long',
      extra: 'long',
      amount: 'decimal(10, 2)',
      uid: 'uuid',
      tags: 'list<int>',
      odd: 'string',
    });
    assert.deepEqual(
      await queryTable(
        table,
        (from) =>
          `select id, amount::varchar as amount, uid::varchar as uid, tags::varchar as tags from ${from} where id = 3`,
      ),
      [{ id: 3, amount: '12.50', uid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', tags: '[1, 2]' }],
    );
    await sink.close();
  });

  it('does not let a declared type add a column under schema_policy freeze', async () => {
    const table = `test.t${tables++}`;
    const sink = sinkOf(table, { partition: '', schema_policy: 'freeze' });
    await sink.open();
    await sink.write({ records: records(['{"id": 1, "n": 1}'], true), positions: new Map([[0, 1]]) });
    const result = await sink.write({
      records: declaring(
        { id: 'int', n: 'int', amount: 'decimal(10, 2)' },
        ['{"id": 2, "n": 2, "amount": "1.50"}'],
        1,
      ),
      positions: new Map([[0, 2]]),
    });
    assert.deepEqual(
      (result.rejected ?? []).map((r) => r.error),
      [`${table} has no column amount (schema_policy: freeze)`],
    );
    assert.deepEqual(await columnTypes(table), { id: 'long', n: 'long' });
    await sink.close();
  });
});

describe('prepared appends', () => {
  it('writes a batch again rather than commit files prepared long ago (orphan removal may have taken them)', async () => {
    const table = `test.t${tables++}`;
    const sink = sinkOf(table);
    await sink.open();
    const batch = records(['{"id": 1}', '{"id": 2}'], false);
    const prepared = (await sink.prepare(batch)) as unknown as {
      at: number;
      written: { files: Array<{ filePath: string }> };
    };
    assert.ok(prepared.written.files.length > 0);
    // Held back for two hours (another sink down, say), and swept meanwhile as orphans.
    prepared.at -= 2 * 3_600_000;
    const loaded = await catalog.loadTable(parseTableIdentifier(table));
    for (const file of prepared.written.files) await loaded.storage.delete(file.filePath);
    await sink.write({ records: batch, positions: new Map([[0, 2]]), prepared });
    await sink.close();
    await loaded.refresh();
    const plan = await planScan(loaded.metadata, loaded.storage);
    const rows = (
      await engine.connection.runAndReadAll(
        `select id from ${scanSql(plan, await loaded.files.readable(planFiles(plan)))} order by id`,
      )
    ).getRowObjectsJson();
    assert.deepEqual(rows, [{ id: '1' }, { id: '2' }]);
  });
});

describe('doctor', () => {
  it('fails a table unlike its schema file, and warns when the table only widened a column', async () => {
    const table = `test.t${tables++}`;
    writeFileSync(
      path.join(dir, 'declared.json'),
      JSON.stringify({
        fields: [
          { name: 'n', type: 'int', required: true },
          { name: 'q', type: 'int' },
        ],
      }),
    );
    writeFileSync(
      path.join(dir, 'other.json'),
      JSON.stringify({
        fields: [
          { name: 'n', type: 'int', required: true },
          { name: 'q', type: 'string' },
        ],
      }),
    );
    const sink = sinkOf(table, { schema: 'declared.json' });
    await sink.open();
    await sink.write({ records: records(['{"n": 1, "q": 2}'], true), positions: new Map([[0, 1]]) });
    await sink.close();
    const check = async (schema: string, settings: Record<string, unknown> = {}) => {
      const resources = createResources();
      resources.provide('catalog', async () => catalog);
      const config = icebergSinkSchema.parse({ type: 'iceberg', table, schema, ...settings });
      return icebergSinkDefinition.check!(config, {
        pipeline: 'p',
        sourceTopic: 'events',
        projectRoot: dir,
        log: undefined as unknown as Log,
        logger: createLogger({ level: 'silent' }),
        resources,
      });
    };
    assert.equal((await check('declared.json'))[0]?.status, 'pass');
    // The DLQ's advice taken: the column widened to long (tributary tables evolve --widen q:long).
    await updateSchema(await catalog.loadTable(parseTableIdentifier(table)), [
      { kind: 'update-column-type', column: 'q', type: 'long' },
    ]);
    const [widened] = await check('declared.json');
    assert.equal(widened?.status, 'warn');
    assert.match(widened?.detail ?? '', /column q is long in the table, int in declared\.json \(widened/);
    assert.match(widened?.fix ?? '', /write the wider types in declared\.json/);
    const [unlike] = await check('other.json');
    assert.equal(unlike?.status, 'fail');
    assert.match(unlike?.detail ?? '', /column q is long in the table, string in other\.json/);
    // An upsert key the table lacks: the pipeline's slip, and the likely column.
    const [misspelt] = await check('declared.json', { mode: 'upsert', key: ['nn'] });
    assert.equal(misspelt?.status, 'fail');
    assert.match(misspelt?.detail ?? '', /key column nn is not in the table \(did you mean n\?\)/);
    assert.equal(misspelt?.fix, "in the pipeline's iceberg sink, key: n rather than nn");
  });
});
