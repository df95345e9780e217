/**
 * What a DLQ reason tells a user to do, done as a user does it, through the `tributary` command: a number
 * beyond a float column's range goes to the DLQ saying to widen the column to double and replay the record;
 * pyiceberg widens it (connected as `tributary catalog info` says), `tributary dlq replay` sends the records
 * back, and the next run writes the one a double holds. One no Iceberg number holds comes back to the DLQ,
 * saying so.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { tributary } from '../cli.ts';
import { useService } from '../services/index.ts';
import { runPython } from '../services/pyiceberg.ts';

const py = await useService('pyiceberg');

describe('a column widened and the DLQ replayed, as its reason says', { skip: py.skip }, () => {
  const root = mkdtempSync(path.join(tmpdir(), 'tributary-widen-replay-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  const ok = async (...args: string[]) => {
    const result = await tributary(args, { cwd: root });
    assert.equal(result.code, 0, `tributary ${args.join(' ')}: ${result.stderr}`);
    return result.stdout;
  };
  /** The DLQ's rows for pipeline `readings`, as "offset: reason". */
  const dlq = async () =>
    (JSON.parse(await ok('dlq', 'list', 'readings', '--json')) as { offset: string; error: string }[])
      .map((r) => `${r.offset}: ${r.error}`)
      .sort();
  const rows = async () =>
    JSON.parse(
      await ok(
        'query',
        'select n, f::varchar as f, typeof(f) as type from lab.readings order by n',
        '--format',
        'json',
      ),
    ) as unknown;

  it('writes the record the float could not hold once the column is a double', async () => {
    writeFileSync(
      path.join(root, 'tributary.yaml'),
      'project: widen\nlog: {backend: embedded, partitions: 1}\n',
    );
    writeFileSync(
      path.join(root, 'readings.schema.json'),
      JSON.stringify({
        fields: [
          { name: 'n', type: 'int', required: true },
          { name: 'f', type: 'float' },
        ],
      }),
    );
    mkdirSync(path.join(root, 'pipelines'));
    writeFileSync(
      path.join(root, 'pipelines', 'readings.yaml'),
      [
        'source: {type: topic, topic: readings}',
        'sinks: [{type: iceberg, table: lab.readings, schema: readings.schema.json, partition: ""}]',
        'batch: {interval: 10ms}',
        '',
      ].join('\n'),
    );
    writeFileSync(
      path.join(root, 'readings.ndjson'),
      '{"n": 1, "f": 1.5}\n{"n": 2, "f": 1e39}\n{"n": 3, "f": 1e400}\n',
    );
    await ok('topics', 'produce', 'readings', 'readings.ndjson');
    await ok('run', 'readings', '--once');

    const then =
      'then replay the record (tributary dlq replay readings); or filter or change them in a transform';
    const noNumber =
      'no Iceberg number holds it: give such values a string column, or filter or change them in a transform';
    assert.deepEqual(await dlq(), [
      `1: column f is float (32-bit, at most ±3.4e38); 1e+39 does not fit — widen the column to double (tributary tables evolve lab.readings --widen f:double, as Iceberg allows float → double), ${then}`,
      `2: column f is float (32-bit, at most ±3.4e38); a number beyond ±1.8e308 does not fit — ${noNumber}`,
    ]);
    assert.deepEqual(await rows(), [{ n: 1, f: '1.5', type: 'FLOAT' }]);

    // As the reason says: pyiceberg, connected to the catalog `tributary catalog info` names.
    const catalog = JSON.parse(await ok('catalog', 'info', '--json')) as {
      name: string;
      uri: string;
      warehouse: string;
    };
    assert.ok(py.info);
    await runPython(
      py.info,
      `
import os
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.types import DoubleType
catalog = SqlCatalog(os.environ["NAME"], uri="sqlite:///" + os.environ["CATALOG"], warehouse=os.environ["WAREHOUSE"])
with catalog.load_table("lab.readings").update_schema() as update:
    update.update_column("f", DoubleType())
`,
      { NAME: catalog.name, CATALOG: catalog.uri.replace(/^sqlite:/, ''), WAREHOUSE: catalog.warehouse },
    );

    assert.match(await ok('dlq', 'replay', 'readings'), /Replayed 2 record\(s\) into readings/);
    await ok('run', 'readings', '--once');
    assert.deepEqual(await rows(), [
      { n: 1, f: '1.5', type: 'DOUBLE' },
      { n: 2, f: '1e+39', type: 'DOUBLE' },
    ]);
    // A double holds ±1.8e308 at most: 1e400 is back in the DLQ (at its replayed offset), not Infinity.
    assert.deepEqual(await dlq(), [
      `4: column f is double (64-bit, at most ±1.8e308); a number beyond ±1.8e308 does not fit — ${noNumber}`,
    ]);
  });
});
