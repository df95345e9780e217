/**
 * The query API's Arrow IPC output, read back by an independent reader: pyarrow (from the pyiceberg
 * environment) opens the stream, validates it fully, and gives back the schema and every value — NULLs,
 * decimals, timestamps with and without a zone, dates, times, intervals, binary, lists, structs, maps —
 * for a query over an Iceberg table, through the handlers and through the HTTP server.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createQueryApi, type QueryApi } from '../../src/query/http-api.ts';
import { ReadOnlyQueryEngine } from '../../src/query/read-only.ts';
import { openTestLakehouse, type TestLakehouse } from '../../src/query/testing.ts';
import { startTestServer } from '../../src/server/test-support.ts';
import { useService } from '../services/index.ts';
import { runPython } from '../services/pyiceberg.ts';

const py = await useService('pyiceberg');

/** pyarrow's view of an IPC stream: schema (name, type) and rows as JSON-friendly values. */
const READ = `
import base64, datetime, decimal, json, sys
import pyarrow as pa
table = pa.ipc.open_stream(open(sys.argv[1], 'rb').read()).read_all()
table.validate(full=True)
def plain(v):
    if isinstance(v, decimal.Decimal): return 'decimal:' + str(v)
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**53: return 'int:' + str(v)
    if isinstance(v, datetime.datetime): return 'datetime:' + v.isoformat()
    if isinstance(v, (datetime.date, datetime.time)): return type(v).__name__ + ':' + v.isoformat()
    if isinstance(v, bytes): return 'bytes:' + v.hex()
    if isinstance(v, pa.MonthDayNano): return 'interval:%d/%d/%d' % (v.months, v.days, v.nanoseconds)
    if isinstance(v, dict): return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)): return [plain(x) for x in v]
    return v
print(json.dumps({
    'schema': [[f.name, str(f.type)] for f in table.schema],
    'rows': [{k: plain(v) for k, v in row.items()} for row in table.to_pylist()],
}))
`;

const dir = mkdtempSync(path.join(tmpdir(), 'tributary-arrow-'));

async function readWithPyarrow(
  bytes: Uint8Array,
): Promise<{ schema: string[][]; rows: Array<Record<string, unknown>> }> {
  const file = path.join(dir, `stream-${Math.random().toString(36).slice(2)}.arrows`);
  writeFileSync(file, bytes);
  const script = `import sys; sys.argv = ['read', ${JSON.stringify(file)}]\n${READ}`;
  return JSON.parse(await runPython(py.info!, script)) as never;
}

// An Iceberg table with every kind of value, and a row of NULLs.
const TABLE_SQL = `
select * from (values
  (1::bigint, 12.50::decimal(12, 2), timestamp '2026-11-23 10:11:12.123456', timestamptz '2026-11-23 10:11:12.5+00',
   date '2026-11-23', 'héllo', true, 1.25::double, ['a', 'b'], {'n': 7, 's': 'x'}),
  (2::bigint, -0.01::decimal(12, 2), timestamp '1969-12-31 23:59:59.999999', timestamptz '2000-01-01 00:00:00+00',
   date '1900-01-01', '', false, -0.0::double, [], {'n': null, 's': null}),
  (3::bigint, null, null, null, null, null, null, null, null, null)
) t(id, amount, ts, tz, d, name, ok, score, tags, info)`;

describe('Arrow IPC output read by pyarrow', { skip: py.skip }, () => {
  let lake: TestLakehouse;
  let engine: ReadOnlyQueryEngine;
  let api: QueryApi;

  before(async () => {
    lake = await openTestLakehouse('tributary-arrow-lake-');
    await lake.createFromSql('shop.facts', TABLE_SQL);
    engine = await ReadOnlyQueryEngine.open(lake.catalog);
    api = createQueryApi({ catalog: lake.catalog, engine });
  });

  after(() => {
    engine?.close();
    lake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gives pyarrow the same values and types as the table, NULLs included', async () => {
    const response = await api.query({
      body: { sql: 'select * from shop.facts order by id' },
      headers: { accept: 'application/vnd.apache.arrow.stream' },
    });
    assert.equal(response.status, 200, String(response.body));
    const read = await readWithPyarrow(response.body as Uint8Array);
    assert.deepEqual(read.schema, [
      ['id', 'int64'],
      ['amount', 'decimal128(12, 2)'],
      ['ts', 'timestamp[us]'],
      ['tz', 'timestamp[us, tz=UTC]'],
      ['d', 'date32[day]'],
      ['name', 'string'],
      ['ok', 'bool'],
      ['score', 'double'],
      ['tags', 'list<item: string>'],
      ['info', 'struct<n: int32, s: string>'],
    ]);
    assert.deepEqual(read.rows, [
      {
        id: 1,
        amount: 'decimal:12.50',
        ts: 'datetime:2026-11-23T10:11:12.123456',
        tz: 'datetime:2026-11-23T10:11:12.500000+00:00',
        d: 'date:2026-11-23',
        name: 'héllo',
        ok: true,
        score: 1.25,
        tags: ['a', 'b'],
        info: { n: 7, s: 'x' },
      },
      {
        id: 2,
        amount: 'decimal:-0.01',
        ts: 'datetime:1969-12-31T23:59:59.999999',
        tz: 'datetime:2000-01-01T00:00:00+00:00',
        d: 'date:1900-01-01',
        name: '',
        ok: false,
        score: -0,
        tags: [],
        info: { n: null, s: null },
      },
      {
        id: 3,
        amount: null,
        ts: null,
        tz: null,
        d: null,
        name: null,
        ok: null,
        score: null,
        tags: null,
        info: null,
      },
    ]);
  });

  it('types DuckDB computes: hugeint sums, intervals, times, blobs, maps, fixed arrays, unsigned', async () => {
    const response = await api.query({
      body: {
        format: 'arrow',
        sql: `select sum(id) as total, interval '1 month 2 days 3.5 seconds' as iv, time '10:11:12.5' as tm,
                     '\\xDE\\xAD'::blob as bl, map {'k': 1} as m, [1, 2, 3]::int[3] as arr,
                     18446744073709551615::ubigint as ub, 1.5::float as fl, -7::tinyint as i8,
                     12345678901234567890123456789.123456789::decimal(38, 9) as wide,
                     uuid '6f1f0a4e-7c1d-4a7b-9d69-1a2b3c4d5e6f' as u, timestamp_ms '2026-11-23 10:11:12.123' as ms
              from shop.facts`,
      },
    });
    assert.equal(response.status, 200, String(response.body));
    const read = await readWithPyarrow(response.body as Uint8Array);
    assert.deepEqual(read.schema, [
      ['total', 'decimal128(38, 0)'],
      ['iv', 'month_day_nano_interval'],
      ['tm', 'time64[us]'],
      ['bl', 'binary'],
      ['m', 'map<string, int32>'],
      ['arr', 'fixed_size_list<item: int32>[3]'],
      ['ub', 'uint64'],
      ['fl', 'float'],
      ['i8', 'int8'],
      ['wide', 'decimal128(38, 9)'],
      ['u', 'string'],
      ['ms', 'timestamp[ms]'],
    ]);
    assert.deepEqual(read.rows, [
      {
        total: 'decimal:6',
        iv: 'interval:1/2/3500000000',
        tm: 'time:10:11:12.500000',
        bl: 'bytes:dead',
        m: [['k', 1]],
        arr: [1, 2, 3],
        ub: 'int:18446744073709551615',
        fl: 1.5,
        i8: -7,
        wide: 'decimal:12345678901234567890123456789.123456789',
        u: '6f1f0a4e-7c1d-4a7b-9d69-1a2b3c4d5e6f',
        ms: 'datetime:2026-11-23T10:11:12.123000',
      },
    ]);
  });

  it('sends the stream unchanged through the HTTP server, with the row headers', async () => {
    const t = await startTestServer({ yaml: 'streams:\n  s: {}\n' });
    try {
      const key = await t.key(['*'], 'query');
      const response = await fetch(`${t.url}/v1/query`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/vnd.apache.arrow.stream',
          authorization: `Bearer ${key}`,
        },
        body: JSON.stringify({ sql: 'select i, i % 2 = 0 as even from range(1000) r(i)', max_rows: 600 }),
      });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get('content-type'), 'application/vnd.apache.arrow.stream');
      assert.equal(response.headers.get('x-tributary-row-count'), '600');
      assert.equal(response.headers.get('x-tributary-truncated'), 'true');
      const read = await readWithPyarrow(new Uint8Array(await response.arrayBuffer()));
      assert.deepEqual(read.schema, [
        ['i', 'int64'],
        ['even', 'bool'],
      ]);
      assert.equal(read.rows.length, 600);
      assert.deepEqual(read.rows[599], { i: 599, even: false });
      assert.ok(read.rows.every((row, i) => row.i === i && row.even === (i % 2 === 0)));
    } finally {
      await t.close();
    }
  });
});
