/**
 * Tables end to end on local storage: optimistic concurrency, snapshot summaries, the metadata and
 * snapshot logs, bad input that must change nothing, and scan pruning.
 *
 * The catalog is test-support.ts's one-table compare-and-swap.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTributaryError, TributaryError } from '../errors.ts';
import { LocalStorage } from '../storage/index.ts';
import { openEngine, type Engine } from './duckdb.ts';
import { decodeManifestList } from './manifest.ts';
import { parseTableMetadata } from './metadata.ts';
import { replaceSortOrder, updatePartitionSpec, updateSchema } from './operations/evolve.ts';
import {
  compact,
  expireSnapshots,
  removeOrphanFiles,
  rewriteManifests,
  sweepRefusal,
  rollbackTo,
} from './operations/maintenance.ts';
import { append, deleteWhere, overwriteWhere, upsert } from './operations/write.ts';
import { planFiles, planScan, scanSql, type Predicate, type ScanOptions } from './scan.ts';
import type { Table } from './table.ts';
import { createTestTable, interceptedEngine, type TestTable } from './test-support.ts';

const storage = new LocalStorage({ fsync: false });

let root: string;
let engine: Engine;
let counter = 0;

function createTable(
  fields: readonly unknown[],
  partition = '',
  properties: Record<string, string> = {},
): Promise<TestTable> {
  counter++;
  return createTestTable({
    storage,
    directory: path.join(root, `t${counter}`),
    identifier: { namespace: ['test'], name: `t${counter}` },
    fields,
    partition,
    properties,
  });
}

/** The table's rows (of the given columns), sorted, as JSON-compatible objects. */
async function rows(table: Table, options: ScanOptions = {}, columns = '*'): Promise<unknown[]> {
  const plan = await planScan(table.metadata, table.storage, options);
  const reader = await engine.connection.runAndReadAll(
    `select ${columns} from ${scanSql(plan, await table.files.readable(planFiles(plan)))} order by all`,
  );
  return reader.getRowObjectsJson();
}

function failsWith(code: string, check: (error: TributaryError) => void = () => {}) {
  return (error: unknown) => {
    assert.ok(isTributaryError(error, code as never), `expected ${code}, got ${String(error)}`);
    check(error);
    return true;
  };
}

function filesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => path.join(e.parentPath, e.name))
      .sort();
  } catch {
    return [];
  }
}

const people = [
  { name: 'id', type: 'long', required: true },
  { name: 'name', type: 'string' },
  { name: 'n', type: 'int' },
];

before(async () => {
  root = mkdtempSync(path.join(tmpdir(), 'tributary-table-'));
  engine = await openEngine({ threads: 2 });
});

after(() => {
  engine.close();
  rmSync(root, { recursive: true, force: true });
});

describe('optimistic concurrency', () => {
  it('re-applies an append on the new head when another writer committed first: both rows survive', async () => {
    const { table: first, load } = await createTable(people);
    const second = await load();
    const a = await append(first, engine, `(select 1 as id, 'a' as name)`);
    const b = await append(second, engine, `(select 2 as id, 'b' as name)`);
    const reloaded = await load();
    assert.deepEqual(await rows(reloaded, {}, 'id, name'), [
      { id: '1', name: 'a' },
      { id: '2', name: 'b' },
    ]);
    const head = reloaded.currentSnapshot!;
    assert.equal(head['snapshot-id'], b.snapshotId);
    assert.equal(head['parent-snapshot-id'], a.snapshotId);
    assert.equal(head['sequence-number'], 2);
    assert.equal(head.summary['total-records'], '2');
    assert.equal(head.summary['total-data-files'], '2');
    // The manifest written for the first attempt carries the sequence number of the commit that won.
    const manifests = decodeManifestList(await storage.read(head['manifest-list']));
    const added = manifests.find((m) => m.addedSnapshotId === b.snapshotId)!;
    assert.equal(added.sequenceNumber, 2);
    assert.equal(added.minSequenceNumber, 2);
    assert.equal(reloaded.metadata['last-sequence-number'], 2);
  });

  it('checks a commit precondition again on the new head when another writer committed first', async () => {
    const { table: first, load } = await createTable(people);
    const second = await load();
    await append(first, engine, `(select 1 as id, 'a' as name)`, { summary: { 'sink.positions': '1' } });
    // `second` still holds the empty table: its first attempt passes the check, the retry must not.
    const seen: Array<string | undefined> = [];
    await assert.rejects(
      append(second, engine, `(select 2 as id, 'b' as name)`, {
        summary: { 'sink.positions': '1' },
        precondition: (metadata) => {
          const head = metadata.snapshots.find((s) => s['snapshot-id'] === metadata['current-snapshot-id']);
          seen.push(head?.summary['sink.positions']);
          if (head?.summary['sink.positions'] !== undefined)
            throw new TributaryError('ICEBERG_COMMIT_CONFLICT', 'positions moved');
        },
      }),
      failsWith('ICEBERG_COMMIT_CONFLICT'),
    );
    assert.deepEqual(seen, [undefined, '1']);
    assert.deepEqual(await rows(await load(), {}, 'id, name'), [{ id: '1', name: 'a' }]);
  });

  it('fails an upsert whose read snapshot was overtaken by a concurrent append, changing nothing', async () => {
    const { table: first, load } = await createTable(people);
    await append(first, engine, `(select 1 as id, 'a' as name)`);
    const second = await load();
    await append(first, engine, `(select 2 as id, 'b' as name)`);
    const before = await load();
    const metadataFiles = filesUnder(path.join(storage.localPath(before.location), 'metadata')).filter((f) =>
      f.endsWith('.metadata.json'),
    );
    await assert.rejects(
      upsert(second, engine, `(select 2 as id, 'B' as name)`, { keyColumns: ['id'] }),
      failsWith('ICEBERG_COMMIT_CONFLICT', (error) => assert.equal(error.retryable, false)),
    );
    const now = await load();
    assert.equal(now.metadataLocation, before.metadataLocation);
    assert.deepEqual(await rows(now, {}, 'id, name'), [
      { id: '1', name: 'a' },
      { id: '2', name: 'b' },
    ]);
    assert.deepEqual(
      filesUnder(path.join(storage.localPath(before.location), 'metadata')).filter((f) =>
        f.endsWith('.metadata.json'),
      ),
      metadataFiles,
    );
  });

  it('fails a copy-on-write delete whose files were replaced by a concurrent commit', async () => {
    const { table: first, load } = await createTable(people);
    await append(first, engine, `(select 1 as id, 'a' as name union all select 2, 'b')`);
    const second = await load();
    await deleteWhere(first, engine, 'id = 1', { mode: 'copy-on-write' });
    await assert.rejects(
      deleteWhere(second, engine, 'id = 2', { mode: 'copy-on-write' }),
      failsWith('ICEBERG_COMMIT_CONFLICT', (error) => assert.equal(error.retryable, false)),
    );
    assert.deepEqual(await rows(await load(), {}, 'id'), [{ id: '2' }]);
  });

  it('fails a commit whose read snapshot is separated from the head by an expired one', async () => {
    // Maintenance runs while the upsert commits (its first attempt's metadata written, before the swap):
    // compaction, a commit adding no files, and an expiry of all but the head. The retry then finds an
    // expired snapshot between what it read and the head: what that one changed cannot be known.
    const between = { run: undefined as (() => Promise<void>) | undefined };
    const hooked = new Proxy(storage, {
      get(target, property) {
        const value = Reflect.get(target, property, target) as unknown;
        if (property !== 'writeExclusive')
          return typeof value === 'function'
            ? ((value as (...args: unknown[]) => unknown).bind(target) as unknown)
            : value;
        return async (location: string, bytes: Uint8Array) => {
          await target.writeExclusive(location, bytes);
          const run = between.run;
          if (run && location.endsWith('.metadata.json')) {
            between.run = undefined;
            await run();
          }
        };
      },
    });
    counter++;
    const { table: first, load } = await createTestTable({
      storage: hooked,
      directory: path.join(root, `t${counter}`),
      identifier: { namespace: ['test'], name: `t${counter}` },
      fields: [
        { name: 'id', type: 'long', required: true },
        { name: 'v', type: 'string' },
      ],
    });
    await append(first, engine, `(select 1::BIGINT as id, 'old' as v)`);
    await append(first, engine, `(select 2::BIGINT as id, 'old' as v)`);
    const other = await openEngine({ threads: 1 });
    const arm = { armed: true };
    const racing = interceptedEngine(engine, /as file_path, _pos::BIGINT as pos/, arm, () => {
      between.run = async () => {
        const second = await load();
        await compact(second, other, { targetFileSizeBytes: 1 << 20 });
        await rewriteManifests(second);
        await expireSnapshots(second, { olderThanMs: Date.now() + 1, retainLast: 1 });
      };
    });
    try {
      await assert.rejects(
        upsert(first, racing, `(select 1::BIGINT as id, 'new' as v)`, { keyColumns: ['id'] }),
        failsWith('ICEBERG_COMMIT_CONFLICT', (error) => assert.match(error.message, /was expired/)),
      );
      assert.deepEqual(await rows(await load(), {}, 'id, v'), [
        { id: '1', v: 'old' },
        { id: '2', v: 'old' },
      ]);
    } finally {
      other.close();
    }
  });

  it('keeps the new metadata file when the catalog may have taken it (a connection lost after the swap)', async () => {
    const { table, load } = await createTable(people);
    const swap = table.operations.swap.bind(table.operations);
    let lost = true;
    (table.operations as { swap: typeof swap }).swap = async (base, next) => {
      await swap(base, next);
      if (lost) {
        lost = false;
        throw new TributaryError('SERVICE_UNAVAILABLE', 'Connection terminated unexpectedly', {
          retryable: true,
        });
      }
    };
    await assert.rejects(append(table, engine, `(select 1 as id, 'a' as name)`), /Connection terminated/);
    assert.deepEqual(await rows(await load(), {}, 'id'), [{ id: '1' }], 'the table stays readable');
  });
});

describe('snapshot summaries', () => {
  it('keeps totals right through appends, deletes of both kinds, compaction and rollback; keeps custom properties', async () => {
    const { table } = await createTable(people, 'bucket(2, id)');
    const totals = async () => {
      const plan = await planScan(table.metadata, table.storage);
      const sum = (files: typeof plan.dataFiles, pick: (f: (typeof plan.dataFiles)[number]) => number) =>
        files.reduce((n, f) => n + pick(f), 0);
      const summary = table.currentSnapshot!.summary;
      assert.deepEqual(
        {
          records: summary['total-records'],
          dataFiles: summary['total-data-files'],
          deleteFiles: summary['total-delete-files'],
          positionDeletes: summary['total-position-deletes'],
          size: summary['total-files-size'],
        },
        {
          records: String(sum(plan.dataFiles, (p) => p.file.recordCount)),
          dataFiles: String(plan.dataFiles.length),
          deleteFiles: String(plan.positionDeletes.length),
          positionDeletes: String(sum(plan.positionDeletes, (p) => p.file.recordCount)),
          size: String(sum([...plan.dataFiles, ...plan.positionDeletes], (p) => p.file.fileSizeInBytes)),
        },
      );
      return summary;
    };
    const first = await append(table, engine, `(select i as id, 'n' || i as name from range(10) r(i))`, {
      summary: { 'tributary.source.offset': '42' },
    });
    let summary = await totals();
    assert.equal(summary.operation, 'append');
    assert.equal(summary['added-records'], '10');
    assert.equal(summary['tributary.source.offset'], '42');

    await deleteWhere(table, engine, 'id < 3', { mode: 'merge-on-read', summary: { note: 'mor' } });
    summary = await totals();
    assert.equal(summary.operation, 'delete');
    assert.equal(summary['added-position-deletes'], '3');
    assert.equal(summary.note, 'mor');

    await deleteWhere(table, engine, 'id = 5', { mode: 'copy-on-write' });
    summary = await totals();
    // Data files were rewritten: a logical overwrite, as Java and pyiceberg record it.
    assert.equal(summary.operation, 'overwrite');
    assert.equal(summary['deleted-records'] !== undefined, true);

    await overwriteWhere(table, engine, 'id = 6', `(select 60 as id, 'sixty' as name)`);
    summary = await totals();
    assert.equal(summary.operation, 'overwrite');

    await upsert(table, engine, `(select 7 as id, 'seven' as name)`, { keyColumns: ['id'] });
    summary = await totals();
    assert.equal(summary.operation, 'overwrite');

    await compact(table, engine);
    summary = await totals();
    assert.equal(summary.operation, 'replace');
    assert.equal(summary['total-delete-files'], '0');

    await rollbackTo(table, first.snapshotId);
    await append(table, engine, `(select 100 as id)`);
    summary = await totals();
    assert.equal(summary['total-records'], '11');
    assert.equal(summary['tributary.source.offset'], undefined);
  });
});

describe('maintenance', () => {
  it('compaction folds in delete files, also those a copy-on-write delete left pointing at a removed file', async () => {
    const { table } = await createTable(people);
    await append(table, engine, `(select i as id from range(5) r(i))`);
    await deleteWhere(table, engine, 'id = 1', { mode: 'merge-on-read' });
    // Rewrites the file the delete file names: the delete file now points at a file no longer in the table.
    await deleteWhere(table, engine, 'id = 2', { mode: 'copy-on-write' });
    assert.equal((await planScan(table.metadata, table.storage)).positionDeletes.length, 1);
    const result = await compact(table, engine);
    assert.equal(result.removedDeleteFiles, 1);
    assert.equal((await planScan(table.metadata, table.storage)).positionDeletes.length, 0);
    assert.equal(table.currentSnapshot!.summary['total-delete-files'], '0');
    assert.deepEqual(await rows(table, {}, 'id'), [{ id: '0' }, { id: '3' }, { id: '4' }]);
  });

  it('sweeps no folder of the project but its own warehouse, nor what the project keeps', async () => {
    const { table } = await createTable(people);
    const at = (location: string) => ({ ...table, storage: table.storage, location }) as unknown as Table;
    const project = path.join(root, 'project');
    const guard = (warehouse: string) => ({
      project,
      warehouse,
      kept: [path.join(project, '.tributary/log')],
    });
    const own = guard(path.join(project, '.tributary'));
    assert.equal(sweepRefusal(at(path.join(project, '.tributary/bronze/t')), own), undefined);
    assert.match(sweepRefusal(at(path.join(project, '.tributary/log')), own)!, /overlaps .*log/);
    assert.match(sweepRefusal(at(path.join(project, '.tributary')), own)!, /holds/);
    assert.match(sweepRefusal(at(root), own)!, /holds/);
    assert.match(sweepRefusal(at(path.join(project, 'models')), own)!, /outside the warehouse/);
    // A warehouse that is the project (or holds it) is not a folder of its own: nothing in the project goes.
    assert.match(sweepRefusal(at(path.join(project, 'data')), guard(project))!, /outside the warehouse/);
    assert.match(sweepRefusal(at(path.join(project, 'x')), guard(root))!, /outside the warehouse/);
    assert.equal(sweepRefusal(at(path.join(root, 'elsewhere/t')), guard(root)), undefined);
  });

  it('removes orphan files and nothing any snapshot reaches', async () => {
    const { table } = await createTable(people, 'bucket(2, id)');
    const first = await append(table, engine, `(select i as id from range(6) r(i))`);
    await deleteWhere(table, engine, 'id = 1', { mode: 'merge-on-read' });
    await deleteWhere(table, engine, 'id = 2', { mode: 'copy-on-write' });
    // A failed write leaves files behind.
    await assert.rejects(append(table, engine, `(select null::bigint as id)`));
    const orphan = `${table.location}/data/orphan.parquet`;
    await storage.write(orphan, new Uint8Array([1, 2, 3]));
    const removed = await removeOrphanFiles(table, { olderThanMs: Date.now() + 1000 });
    assert.deepEqual(removed, [orphan]);
    assert.deepEqual(await rows(table, {}, 'id'), [{ id: '0' }, { id: '3' }, { id: '4' }, { id: '5' }]);
    assert.equal((await rows(table, { snapshotId: first.snapshotId }, 'id')).length, 6);
  });
});

describe('schema evolution', () => {
  it('reads nested fields of older files by id after they are renamed, dropped, added and moved', async () => {
    const { table } = await createTable([
      { name: 'id', type: 'long', required: true },
      {
        name: 's',
        type: {
          type: 'struct',
          fields: [
            { name: 'x', type: 'int' },
            { name: 'w', type: 'string' },
          ],
        },
      },
      {
        name: 'l',
        type: { type: 'list', element: { type: 'struct', fields: [{ name: 'a', type: 'int' }] } },
      },
    ]);
    await append(table, engine, `(select 1 as id, {'x': 5, 'w': 'q'} as s, [{'a': 7}] as l)`);
    await updateSchema(table, [
      { kind: 'rename-column', column: 's.x', newName: 'y' },
      { kind: 'delete-column', column: 's.w' },
      { kind: 'add-column', parent: 's', name: 'z', type: 'string' },
      { kind: 'move-column', column: 's.z', position: 'first' },
      { kind: 'rename-column', column: 'l.element.a', newName: 'b' },
    ]);
    await append(table, engine, `(select 2 as id, {'z': 'new', 'y': 6} as s, [{'b': 8}] as l)`);
    assert.deepEqual(await rows(table), [
      { id: '1', s: { z: null, y: 5 }, l: [{ b: 7 }] },
      { id: '2', s: { z: 'new', y: 6 }, l: [{ b: 8 }] },
    ]);
  });

  it('reads a table with a column named file_row_number, which DuckDB reads row positions as', async () => {
    const { table } = await createTable([
      { name: 'file_row_number', type: 'long' },
      { name: 's', type: { type: 'struct', fields: [{ name: 'x', type: 'int' }] } },
    ]);
    await append(table, engine, `(select 7 as file_row_number, {'x': 1} as s)`);
    assert.deepEqual(await rows(table), [{ file_row_number: '7', s: { x: 1 } }]);
    // A renamed nested field: the files are read by their own column names.
    await updateSchema(table, [{ kind: 'rename-column', column: 's.x', newName: 'y' }]);
    await append(table, engine, `(select 8 as file_row_number, {'y': 2} as s)`);
    assert.deepEqual(await rows(table), [
      { file_row_number: '7', s: { y: 1 } },
      { file_row_number: '8', s: { y: 2 } },
    ]);
  });

  it('keeps deleting from and pruning files of a spec whose source column was dropped', async () => {
    const { table } = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'region', type: 'string' },
      ],
      'region',
    );
    await append(table, engine, `(select i as id, 'r' || (i % 2) as region from range(4) r(i))`);
    await updatePartitionSpec(table, '');
    await updateSchema(table, [{ kind: 'delete-column', column: 'region' }]);
    const plan = await planScan(table.metadata, table.storage, {
      filter: [{ column: 'id', op: '=', value: 3n }],
    });
    assert.equal(plan.dataFiles.length, 1);
    await deleteWhere(table, engine, 'id = 1', { mode: 'merge-on-read' });
    await deleteWhere(table, engine, 'id = 2', { mode: 'copy-on-write' });
    await compact(table, engine);
    assert.deepEqual(await rows(table), [{ id: '0' }, { id: '3' }]);
  });

  it('refuses to drop a column the sort order sorts by (other engines could no longer bind it)', async () => {
    const { table } = await createTable(people);
    await replaceSortOrder(table, 'n desc');
    const location = table.metadataLocation;
    await assert.rejects(
      updateSchema(table, [{ kind: 'delete-column', column: 'n' }]),
      failsWith('ICEBERG_INVALID_SCHEMA'),
    );
    assert.equal(table.metadataLocation, location);
    await replaceSortOrder(table, '');
    await updateSchema(table, [{ kind: 'delete-column', column: 'n' }]);
    assert.deepEqual(
      table.schema.fields.map((f) => f.name),
      ['id', 'name'],
    );
  });

  it('prunes by partition values written before their source column was widened', async () => {
    const { table } = await createTable([{ name: 'id', type: 'int' }], 'id');
    await append(table, engine, `(select i as id from range(3) r(i))`);
    await updateSchema(table, [{ kind: 'update-column-type', column: 'id', type: 'long' }]);
    const plan = await planScan(table.metadata, table.storage, {
      filter: [{ column: 'id', op: '=', value: 1n }],
    });
    assert.equal(plan.dataFiles.length, 1);
    await deleteWhere(table, engine, 'id = 1', { mode: 'copy-on-write' });
    await deleteWhere(table, engine, 'id = 2', { mode: 'merge-on-read' });
    assert.deepEqual(await rows(table), [{ id: '0' }]);
  });
});

describe('metadata log and snapshot log', () => {
  it('records every previous metadata file and every change of the current snapshot', async () => {
    const { table, load } = await createTable(people, '', { 'write.metadata.previous-versions-max': '3' });
    const locations = [table.metadataLocation];
    const snapshots: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      snapshots.push((await append(table, engine, `(select ${i} as id)`)).snapshotId);
      locations.push(table.metadataLocation);
    }
    let metadata = table.metadata;
    assert.deepEqual(
      metadata['metadata-log'].map((e) => e['metadata-file']),
      locations.slice(0, 3),
    );
    assert.deepEqual(
      metadata['snapshot-log'].map((e) => e['snapshot-id']),
      snapshots,
    );
    assert.deepEqual(
      metadata.snapshots.map((s) => s['snapshot-id']),
      snapshots,
    );
    for (const [i, entry] of metadata['snapshot-log'].entries()) {
      assert.equal(entry['timestamp-ms'], metadata.snapshots[i]!['timestamp-ms']);
    }
    // Metadata file versions count up; the log keeps the last `previous-versions-max` files.
    assert.match(table.metadataLocation, /\/00003-[^/]+\.metadata\.json$/);
    await sleep(2); // a later millisecond, for time travel by timestamp below
    await rollbackTo(table, snapshots[0]!);
    locations.push(table.metadataLocation);
    metadata = (await load()).metadata;
    assert.deepEqual(
      metadata['metadata-log'].map((e) => e['metadata-file']),
      locations.slice(1, 4),
    );
    assert.deepEqual(
      metadata['snapshot-log'].map((e) => e['snapshot-id']),
      [...snapshots, snapshots[0]],
    );
    // Time travel by timestamp follows the log: just after the rollback, the first snapshot was current.
    assert.deepEqual(await rows(table, { asOfMs: metadata['snapshot-log'].at(-1)!['timestamp-ms'] }, 'id'), [
      { id: '0' },
    ]);
    assert.deepEqual(await rows(table, { asOfMs: metadata.snapshots[2]!['timestamp-ms'] }, 'id'), [
      { id: '0' },
      { id: '1' },
      { id: '2' },
    ]);

    const expired = await expireSnapshots(table, { olderThanMs: Date.now() + 1 });
    assert.equal(expired.expiredSnapshots, 2);
    assert.deepEqual(
      table.metadata['snapshot-log'].map((e) => e['snapshot-id']),
      [snapshots[0], snapshots[0]],
    );
    assert.deepEqual(await rows(table, {}, 'id'), [{ id: '0' }]);
  });
});

describe('bad input changes nothing', () => {
  it('rejects a relation with a column the table lacks, a null in a required column, a value that cannot be cast and a bad filter', async () => {
    const { table, load } = await createTable(people, 'bucket(2, id)');
    await append(table, engine, `(select 1 as id, 'a' as name, 1 as n)`);
    const location = table.metadataLocation;
    const files = filesUnder(storage.localPath(table.location));
    const attempts: Array<[string, () => Promise<unknown>]> = [
      ['unknown column', () => append(table, engine, `(select 2 as id, 'x' as nickname)`)],
      ['unreadable relation', () => append(table, engine, `(select nope)`)],
      ['upsert without its key', () => upsert(table, engine, `(select 'x' as name)`, { keyColumns: ['id'] })],
      ['null in required', () => append(table, engine, `(select null::bigint as id, 'b' as name)`)],
      ['missing required', () => append(table, engine, `(select 'b' as name)`)],
      ['cannot cast', () => append(table, engine, `(select 'two' as id)`)],
      ['overflow', () => append(table, engine, `(select 2 as id, 99999999999 as n)`)],
      ['bad filter', () => deleteWhere(table, engine, 'no_such_column = 1')],
      ['bad filter syntax', () => deleteWhere(table, engine, 'id = = 1', { mode: 'merge-on-read' })],
      ['overwrite, bad rows', () => overwriteWhere(table, engine, 'id = 1', `(select 'x' as id)`)],
      [
        'upsert, unknown column',
        () => upsert(table, engine, `(select 1 as id, 1 as z)`, { keyColumns: ['id'] }),
      ],
      [
        'upsert, null in required',
        () => upsert(table, engine, `(select null::bigint as id, 'q' as name)`, { keyColumns: ['id'] }),
      ],
    ];
    for (const [what, attempt] of attempts) {
      await assert.rejects(attempt(), failsWith('INVALID_INPUT'), what);
      assert.equal((await load()).metadataLocation, location, what);
      assert.equal(table.metadataLocation, location, what);
    }
    assert.deepEqual(filesUnder(storage.localPath(table.location)), files);
    assert.deepEqual(await rows(table, {}, 'id, name, n'), [{ id: '1', name: 'a', n: 1 }]);
    // Other engines require Parquet fixed_len_byte_array for fixed[L], which DuckDB cannot write.
    const { table: fixed } = await createTable([{ name: 'x', type: 'fixed[3]' }]);
    await assert.rejects(
      append(fixed, engine, `(select 'abc'::blob as x)`),
      failsWith('ICEBERG_UNSUPPORTED'),
    );
    assert.equal(fixed.currentSnapshot, undefined);
    const temp = await engine.connection.runAndReadAll(
      `select count(*)::int from duckdb_tables() where table_name like '__tributary%'`,
    );
    assert.equal(temp.getRows()[0]?.[0], 0, 'no temporary tables are left behind');
  });

  it('reads metadata that has a null current snapshot id, as some catalogs write it', async () => {
    const { table } = await createTable(people);
    const text = new TextDecoder().decode(await storage.read(table.metadataLocation));
    const nulled = text.replace(/"current-snapshot-id": -1/, '"current-snapshot-id": null');
    assert.notEqual(nulled, text);
    const metadata = parseTableMetadata(nulled, 'test');
    assert.equal(metadata['current-snapshot-id'], undefined);
    assert.equal((await planScan(metadata, storage)).dataFiles.length, 0);
  });

  it('rejects an unknown snapshot id and a time before the first snapshot', async () => {
    const { table } = await createTable(people);
    await append(table, engine, `(select 1 as id)`);
    await assert.rejects(
      planScan(table.metadata, table.storage, { snapshotId: 12345n }),
      failsWith('SNAPSHOT_NOT_FOUND'),
    );
    await assert.rejects(
      planScan(table.metadata, table.storage, { asOfMs: 1000 }),
      failsWith('SNAPSHOT_NOT_FOUND'),
    );
    await assert.rejects(rollbackTo(table, 12345n), failsWith('SNAPSHOT_NOT_FOUND'));
  });
});

describe('scan pruning', () => {
  async function planned(table: Table, filter: Predicate[]) {
    const plan = await planScan(table.metadata, table.storage, { filter });
    return plan;
  }

  it('skips files and manifests by partition values, across partition specs', async () => {
    const { table } = await createTable(
      [
        { name: 'id', type: 'long', required: true },
        { name: 'ts', type: 'timestamptz' },
        { name: 'region', type: 'string' },
      ],
      'day(ts)',
    );
    for (let day = 1; day <= 3; day++) {
      await append(
        table,
        engine,
        `(select ${day} * 10 + i as id, timestamptz '2024-01-0${day} 12:00:00+00' as ts, 'r' || i as region from range(3) r(i))`,
      );
    }
    const jan = (d: number, h = 0) => BigInt(Date.UTC(2024, 0, d, h)) * 1000n;
    let plan = await planned(table, [{ column: 'ts', op: '>=', value: jan(3) }]);
    assert.equal(plan.dataFiles.length, 1);
    assert.equal(plan.manifestsSkipped, 2);
    plan = await planned(table, [{ column: 'ts', op: '<', value: jan(2, 6) }]);
    assert.equal(plan.dataFiles.length, 1, 'day 2 by its partition, day 1 by the bounds of ts');
    plan = await planned(table, [{ column: 'ts', op: '<', value: jan(2, 13) }]);
    assert.equal(plan.dataFiles.length, 2);
    plan = await planned(table, [{ column: 'ts', op: 'is_null' }]);
    assert.equal(plan.dataFiles.length, 0);

    await updatePartitionSpec(table, 'region');
    await append(table, engine, `(select 40 + i as id, null as ts, 'r' || i as region from range(3) r(i))`);
    plan = await planned(table, [{ column: 'region', op: '=', value: 'r1' }]);
    // Three files of the first spec (not partitioned by region; their bounds do include r1), one of the second.
    assert.equal(plan.dataFiles.length, 4);
    plan = await planned(table, [
      { column: 'region', op: '=', value: 'r1' },
      { column: 'ts', op: 'is_null' },
    ]);
    assert.equal(plan.dataFiles.length, 1);
    plan = await planned(table, [{ column: 'ts', op: '>', value: jan(2, 12) }]);
    assert.equal(plan.dataFiles.length, 1, 'a file of all-null ts has no upper bound above the filter');
    const reader = await engine.connection.runAndReadAll(
      `select id from ${scanSql(plan, await table.files.readable(planFiles(plan)))} where ts > timestamptz '2024-01-02 12:00:00+00' order by id`,
    );
    assert.deepEqual(reader.getRowObjectsJson(), [{ id: '30' }, { id: '31' }, { id: '32' }]);
  });

  it('skips files by column bounds, and keeps files whose truncated string bounds may match', async () => {
    const { table } = await createTable([
      { name: 'id', type: 'long', required: true },
      { name: 'name', type: 'string' },
      { name: 'n', type: 'int' },
    ]);
    const prefix = 'abcdefghijklmnopqrstuvwxyz';
    for (let batch = 0; batch < 3; batch++) {
      await append(
        table,
        engine,
        `(select ${batch} * 100 + i as id, '${prefix}' || ${batch} as name, case when ${batch} = 2 then null else i end as n from range(10) r(i))`,
      );
    }
    assert.equal((await planned(table, [{ column: 'id', op: '=', value: 105n }])).dataFiles.length, 1);
    assert.equal((await planned(table, [{ column: 'id', op: '>', value: 150n }])).dataFiles.length, 1);
    assert.equal(
      (await planned(table, [{ column: 'id', op: 'in', values: [5n, 205n] }])).dataFiles.length,
      2,
    );
    assert.equal((await planned(table, [{ column: 'id', op: '<', value: 0n }])).dataFiles.length, 0);
    assert.equal((await planned(table, [{ column: 'n', op: 'is_null' }])).dataFiles.length, 1);
    assert.equal((await planned(table, [{ column: 'n', op: 'not_null' }])).dataFiles.length, 2);
    // Bounds of strings longer than 16 characters are truncated: every file may hold the value.
    assert.equal(
      (await planned(table, [{ column: 'name', op: '=', value: `${prefix}1` }])).dataFiles.length,
      3,
    );
    assert.equal((await planned(table, [{ column: 'name', op: '<', value: 'abc' }])).dataFiles.length, 0);
  });
});
