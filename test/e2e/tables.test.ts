/** `tributary tables …` and `tributary query` as a user runs them, bad input included. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { parseTableIdentifier } from '../../src/catalog/identifier.ts';
import { withCatalog } from '../../src/cli/project-catalog.ts';
import { loadProject } from '../../src/core/project.ts';
import { upsert } from '../../src/iceberg/operations/write.ts';
import { tributary } from '../cli.ts';

const project = mkdtempSync(path.join(tmpdir(), 'tributary-tables-'));
const file = (name: string, content: string) => {
  const full = path.join(project, name);
  writeFileSync(full, content);
  return full;
};
const run = async (...args: string[]) => tributary(args, { cwd: project });
const ok = async (...args: string[]) => {
  const result = await run(...args);
  assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
};
const queryJson = async (sql: string, ...extra: string[]) =>
  JSON.parse(await ok('query', sql, '--format', 'json', ...extra)) as Array<Record<string, unknown>>;
const snapshotCount = async (table: string) =>
  (JSON.parse(await ok('tables', 'snapshots', table, '--json')) as unknown[]).length;

const rows = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => {
    const id = from + i;
    return JSON.stringify({
      id,
      user_id: `u${id % 7}`,
      ts: `2026-11-${String(1 + (id % 3)).padStart(2, '0')}T10:00:00Z`,
      amount: id * 1.5,
    });
  }).join('\n') + '\n';

describe('tributary tables and query', () => {
  before(async () => {
    await ok('init', project);
    file(
      'schema.json',
      JSON.stringify({
        fields: [
          { name: 'id', type: 'long', required: true },
          { name: 'user_id', type: 'string' },
          { name: 'ts', type: 'timestamptz' },
          { name: 'amount', type: 'double' },
        ],
      }),
    );
  });

  it('creates a partitioned table and appends NDJSON, CSV and Parquet', async () => {
    const created = await ok(
      'tables',
      'create',
      'shop.events',
      '--schema',
      'schema.json',
      '--partition',
      'day(ts), bucket(4, user_id)',
    );
    assert.match(created, /Created shop\.events/);
    assert.match(
      await ok('tables', 'append', 'shop.events', file('a.ndjson', rows(0, 100))),
      /appended 100 rows/,
    );
    file('b.csv', 'id,user_id,ts,amount\n100,u1,2026-11-01T00:00:00Z,2.5\n101,,2026-11-02T00:00:00Z,\n');
    assert.match(await ok('tables', 'append', 'shop.events', 'b.csv'), /appended 2 rows/);
    const [count] = await queryJson(
      'select count(*)::int as n, count(user_id)::int as users from shop.events',
    );
    assert.deepEqual(count, { n: 102, users: 101 });
    assert.match(await ok('tables', 'list'), /shop\.events\s+102\s+0\s+2/);
    const shown = await ok('tables', 'show', 'shop.events');
    assert.match(shown, /partition\s+day\(ts\), bucket\(4, user_id\)/);
    assert.match(shown, /amount\s+double/);
  });

  it("says how many rows delete files remove, beside the data files' records", async () => {
    await ok('tables', 'create', 'shop.upserted', '--schema', 'schema.json');
    await ok('tables', 'append', 'shop.upserted', file('u.ndjson', rows(0, 10)));
    // An upsert (as the Iceberg sink's upsert mode makes) of 3 existing keys: 3 position deletes.
    await withCatalog(loadProject(project), async (catalog, engine) => {
      const table = await catalog.loadTable(parseTableIdentifier('shop.upserted'));
      await upsert(table, engine, `(select unnest([1, 2, 3])::bigint as id, 'u9' as user_id)`, {
        keyColumns: ['id'],
      });
    });
    const [count] = await queryJson('select count(*)::int as n from shop.upserted');
    assert.deepEqual(count, { n: 10 });
    const listed = await ok('tables', 'list');
    assert.match(listed, /shop\.upserted\s+13\s+3\s+2/);
    assert.match(listed, /holds fewer rows than records until `tributary tables compact`/);
    assert.match(await ok('tables', 'show', 'shop.upserted'), /13 records, 3 deletes\)/);
    await ok('tables', 'compact', 'shop.upserted');
    assert.match(await ok('tables', 'list'), /shop\.upserted\s+10\s+0\s+3/);
    await ok('tables', 'drop', 'shop.upserted');
  });

  it('answers queries as a table, JSON and CSV', async () => {
    const table = await ok(
      'query',
      'select user_id, count(*) as n from shop.events where user_id is not null group by 1 order by 1 limit 2',
    );
    assert.match(table, /user_id\s+n\n/);
    assert.match(table, /\(2 rows\)/);
    const csv = await ok('query', "select 'a,b' as x, 1 as y", '--format', 'csv');
    assert.equal(csv.trim(), 'x,y\n"a,b",1');
  });

  it('time travels by snapshot id and by time, and rolls back', async () => {
    const snapshots = JSON.parse(await ok('tables', 'snapshots', 'shop.events', '--json')) as Array<{
      snapshotId: string;
      time: string;
    }>;
    const first = snapshots[0]!;
    const [then] = await queryJson(
      'select count(*)::int as n from shop.events',
      '--snapshot',
      first.snapshotId,
    );
    assert.deepEqual(then, { n: 100 });
    const [asOf] = await queryJson('select count(*)::int as n from shop.events', '--as-of', first.time);
    assert.deepEqual(asOf, { n: 100 });
    await ok('tables', 'rollback', 'shop.events', first.snapshotId);
    const [now] = await queryJson('select count(*)::int as n from shop.events');
    assert.deepEqual(now, { n: 100 });
  });

  it('compacts and expires without changing the rows', async () => {
    await ok('tables', 'append', 'shop.events', file('c.ndjson', rows(200, 300)));
    const before = await queryJson('select sum(id)::bigint as s, count(*)::int as n from shop.events');
    assert.match(await ok('tables', 'compact', 'shop.events'), /Rewrote \d+ file/);
    assert.match(
      await ok('tables', 'expire', 'shop.events', '--older-than', '0s', '--retain-last', '1'),
      /Expired \d+ snapshot/,
    );
    assert.deepEqual(
      await queryJson('select sum(id)::bigint as s, count(*)::int as n from shop.events'),
      before,
    );
    assert.equal(await snapshotCount('shop.events'), 1);
  });

  it('refuses bad input with a clear error and changes nothing', async () => {
    // A table of an existing namespace misspelt: named, with the likely one (DuckDB blamed the namespace).
    const misspelt = await run('query', 'select count(*) from shop.event');
    assert.equal(misspelt.code, 1);
    assert.match(misspelt.stderr, /there is no table "shop\.event" \(did you mean shop\.events\?/);
    const snapshots = await snapshotCount('shop.events');
    const extra = await run(
      'tables',
      'append',
      'shop.events',
      file('extra.ndjson', '{"id": 1, "colour": "red"}\n'),
    );
    assert.equal(extra.code, 1);
    assert.match(extra.stderr, /INVALID_INPUT.*colour/);
    const wrongType = await run(
      'tables',
      'append',
      'shop.events',
      file('wrong.ndjson', '{"id": "not a number"}\n'),
    );
    assert.equal(wrongType.code, 1);
    assert.match(wrongType.stderr, /INVALID_INPUT/);
    const missing = await run(
      'tables',
      'append',
      'shop.events',
      file('missing.ndjson', '{"user_id": "u1"}\n'),
    );
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /required/);
    assert.equal(await snapshotCount('shop.events'), snapshots);

    const partition = await run(
      'tables',
      'create',
      'shop.bad',
      '--schema',
      'schema.json',
      '--partition',
      'day(user_id)',
    );
    assert.notEqual(partition.code, 0);
    assert.match(partition.stderr, /ICEBERG_INVALID_PARTITION/);
    const malformed = await run(
      'tables',
      'create',
      'shop.bad',
      '--schema',
      'schema.json',
      '--partition',
      'bucket(ts',
    );
    assert.match(malformed.stderr, /ICEBERG_INVALID_PARTITION/);
    assert.doesNotMatch(await ok('tables', 'list'), /shop\.bad/);

    const unknown = await run('tables', 'show', 'shop.nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /TABLE_NOT_FOUND/);
    const snapshot = await run('query', 'select 1 from shop.events', '--snapshot', '12345');
    assert.match(snapshot.stderr, /SNAPSHOT_NOT_FOUND/);
    const rollback = await run('tables', 'rollback', 'shop.events', '12345');
    assert.match(rollback.stderr, /SNAPSHOT_NOT_FOUND/);
    const badName = await run('tables', 'show', 'x');
    assert.notEqual(badName.code, 0);
  });

  it('evolves a schema: widens, makes optional, renames, adds and drops; old rows read right', async () => {
    file(
      'narrow.json',
      JSON.stringify({
        fields: [
          { name: 'id', type: 'long', required: true },
          { name: 'price', type: 'float' },
          { name: 'qty', type: 'int' },
          { name: 'note', type: 'string', required: true },
          { name: 'address', type: { type: 'struct', fields: [{ name: 'city', type: 'string' }] } },
          { name: 'legacy', type: 'string' },
        ],
      }),
    );
    await ok('tables', 'create', 'shop.orders', '--schema', 'narrow.json');
    await ok(
      'tables',
      'append',
      'shop.orders',
      file(
        'orders.ndjson',
        '{"id": 1, "price": 1.5, "qty": 2, "note": "a", "address": {"city": "Oslo"}, "legacy": "x"}\n',
      ),
    );

    // Bad changes are refused, each with what to do, and change nothing.
    const before = await ok('tables', 'show', 'shop.orders', '--json');
    for (const [args, error] of [
      [['--widen', 'price:int'], /ICEBERG_INVALID_SCHEMA.*Cannot change column price from float to int/],
      [['--widen', 'nope:double'], /Column nope is not in the schema/],
      [['--widen', 'qty:strin'], /not an Iceberg type/],
      [['--widen', 'qty'], /USAGE.*expected column:type/],
      [['--add', 'id:long'], /Cannot add column id: it already exists/],
      [['--widen', 'qty:long', '--add', 'qty:int'], /Cannot add column qty/],
      [[], /USAGE.*needs a change/],
    ] as const) {
      const refused = await run('tables', 'evolve', 'shop.orders', ...args);
      assert.notEqual(refused.code, 0, args.join(' '));
      assert.match(refused.stderr, error, args.join(' '));
    }
    const dryRun = await ok('tables', 'evolve', 'shop.orders', '--widen', 'price:double', '--dry-run');
    assert.match(dryRun, /Would change shop\.orders: widened price to double\. Nothing was changed/);
    assert.match(dryRun, /price\s+double/);
    assert.equal(await ok('tables', 'show', 'shop.orders', '--json'), before);

    const evolved = await ok(
      'tables',
      'evolve',
      'shop.orders',
      '--widen',
      'price:double',
      '--widen',
      'qty:long',
      '--optional',
      'note',
      '--drop',
      'legacy',
      '--rename',
      'note:comment',
      '--add',
      'address.zip:string',
      '--add',
      'discount:decimal(12, 2)',
    );
    assert.match(evolved, /shop\.orders is at schema 1: widened price to double; widened qty to long/);
    assert.match(evolved, /comment\s+string\s+no/);
    assert.doesNotMatch(evolved.split('\n\n')[1]!, /legacy/);
    await ok(
      'tables',
      'append',
      'shop.orders',
      file(
        'wider.ndjson',
        '{"id": 2, "price": 1e39, "qty": 5000000000, "address": {"city": "Rome", "zip": "00100"}, "discount": 1.25}\n',
      ),
    );
    assert.deepEqual(
      await queryJson(
        'select id::int id, price, qty::text qty, comment, address.zip zip, discount::text discount from shop.orders order by id',
      ),
      [
        { id: 1, price: 1.5, qty: '2', comment: 'a', zip: null, discount: null },
        { id: 2, price: 1e39, qty: '5000000000', comment: null, zip: '00100', discount: '1.25' },
      ],
    );
  });

  it('prints how other engines connect', async () => {
    const info = JSON.parse(await ok('catalog', 'info', '--json')) as {
      type: string;
      name: string;
      uri: string;
      warehouse: string;
    };
    assert.equal(info.type, 'sql');
    assert.equal(info.name, 'tributary');
    assert.match(info.uri, /^sqlite:\//);
    assert.match(info.warehouse, /^file:\/\//);
    const text = await ok('catalog', 'info');
    assert.match(text, /SqlCatalog\("tributary", uri="sqlite:\/\/\/\//);
    assert.match(text, /iceberg_scan\('file:\/\/.*metadata\.json'\)/);
  });

  it('removes orphan files, old enough, that no table sharing the location reaches', async () => {
    await ok('tables', 'create', 'shop.outer', '--schema', 'schema.json');
    await ok('tables', 'append', 'shop.outer', file('outer.ndjson', rows(0, 10)));
    const outer = /location\s+(\S+)/.exec(await ok('tables', 'show', 'shop.outer'))![1]!;
    const folder = outer.startsWith('file://') ? fileURLToPath(outer) : outer;
    // Another table inside its location, in a nested namespace: its files are not the outer table's orphans.
    await ok(
      'tables',
      'create',
      'shop.archive.inner',
      '--schema',
      'schema.json',
      '--location',
      `${outer}/inner`,
    );
    await ok('tables', 'append', 'shop.archive.inner', file('inner.ndjson', rows(100, 105)));
    // Tables of nested namespaces are listed with the others.
    assert.match(await ok('tables', 'list'), /shop\.archive\.inner\s+5\s/);
    assert.match(await ok('catalog', 'info'), /shop\.archive\.inner/);
    assert.match(await ok('doctor'), /namespace\(s\), [1-9]\d* table\(s\)/);
    const old = path.join(folder, 'data', 'left-by-a-failed-write.parquet');
    const young = path.join(folder, 'data', 'being-written.parquet');
    writeFileSync(old, 'x');
    writeFileSync(young, 'x');
    // Everything but `young` two days old.
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    for (const entry of readdirSync(folder, { recursive: true, withFileTypes: true }))
      if (entry.isFile() && path.join(entry.parentPath, entry.name) !== young)
        utimesSync(path.join(entry.parentPath, entry.name), twoDaysAgo, twoDaysAgo);
    const innerFiles = readdirSync(path.join(folder, 'inner'), { recursive: true, withFileTypes: true })
      .filter((entry) => entry.isFile())
      .map((entry) => path.join(entry.parentPath, entry.name));
    const tooYoung = await run('tables', 'remove-orphan-files', 'shop.outer', '--older-than', '23h');
    assert.equal(tooYoung.code, 2);
    assert.match(tooYoung.stderr, /USAGE.*at least 1d/);
    const dryRun = await ok('tables', 'remove-orphan-files', 'shop.outer', '--older-than', '1d', '--dry-run');
    assert.match(dryRun, /left-by-a-failed-write\.parquet/);
    assert.match(dryRun, /1 orphan file\(s\) under shop\.outer would be deleted/);
    assert.ok(existsSync(old), 'a dry run deletes nothing');
    const removed = await ok('tables', 'remove-orphan-files', 'shop.outer', '--older-than', '1d');
    assert.match(removed, /Deleted 1 orphan file/);
    assert.ok(!existsSync(old));
    assert.ok(existsSync(young), 'a file younger than --older-than stays');
    assert.deepEqual(await queryJson('select count(*)::int as n from shop.outer'), [{ n: 10 }]);
    // (Queries name two-part tables: the inner table's files are checked one by one.)
    assert.ok(innerFiles.length >= 4, innerFiles.join(', '));
    assert.deepEqual(
      innerFiles.filter((f) => !existsSync(f)),
      [],
      'every file of the nested table is there',
    );
    assert.match(await ok('tables', 'show', 'shop.archive.inner'), /records\s+5|5 record/);
    // A table whose location holds the project (or the warehouse) is refused, not swept.
    await ok('tables', 'create', 'shop.everything', '--schema', 'schema.json', '--location', project);
    const refused = await run('tables', 'remove-orphan-files', 'shop.everything', '--dry-run');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /INVALID_INPUT.*would delete what is there/);
    assert.ok(existsSync(path.join(project, 'tributary.yaml')));
    // As is one in the project but outside the warehouse (among its configuration), `//` and all.
    await ok(
      'tables',
      'create',
      'shop.stray',
      '--schema',
      'schema.json',
      '--location',
      `${project}//pipelines/x`,
    );
    const stray = await run('tables', 'remove-orphan-files', 'shop.stray', '--dry-run');
    assert.equal(stray.code, 1);
    assert.match(stray.stderr, /INVALID_INPUT.*outside the warehouse/);
    await ok('tables', 'drop', 'shop.everything', '--purge');
    await ok('tables', 'drop', 'shop.stray', '--purge');
  });

  const locationOf = async (table: string) => {
    const location = /location\s+(\S+)/.exec(await ok('tables', 'show', table))![1]!;
    return location.startsWith('file://') ? fileURLToPath(location) : location;
  };
  const filesUnder = (folder: string) =>
    existsSync(folder)
      ? readdirSync(folder, { recursive: true, withFileTypes: true })
          .filter((entry) => entry.isFile())
          .map((entry) => path.join(entry.parentPath, entry.name))
      : [];

  it('drops a table with its files, and what failed writes left in its folder', async () => {
    await ok('tables', 'create', 'shop.tmp', '--schema', 'schema.json');
    await ok('tables', 'append', 'shop.tmp', file('tmp.ndjson', rows(0, 3)));
    const folder = await locationOf('shop.tmp');
    writeFileSync(path.join(folder, 'data', 'left-by-a-failed-write.parquet'), 'x');
    assert.match(await ok('tables', 'drop', 'shop.tmp', '--purge'), /Dropped shop\.tmp and deleted \d+ file/);
    assert.doesNotMatch(await ok('tables', 'list'), /shop\.tmp/);
    assert.deepEqual(filesUnder(folder), []);
  });

  it('drops with --purge only the files of the table: not those of a table inside it, nor the project', async () => {
    // A table over the whole project: its own files go, the project's and the other tables' stay.
    await ok('tables', 'create', 'shop.whole', '--schema', 'schema.json', '--location', project);
    await ok('tables', 'append', 'shop.whole', file('whole.ndjson', rows(0, 2)));
    const wholeFiles = [
      ...filesUnder(path.join(project, 'metadata')),
      ...filesUnder(path.join(project, 'data')),
    ];
    assert.ok(wholeFiles.length >= 3, wholeFiles.join(', '));
    const projectFiles = filesUnder(project).filter((f) => !wholeFiles.includes(f));
    await ok('tables', 'drop', 'shop.whole', '--purge');
    assert.deepEqual(
      wholeFiles.filter((f) => existsSync(f)),
      [],
      "the table's own files are gone",
    );
    assert.deepEqual(
      projectFiles.filter((f) => !existsSync(f) && !f.includes(`${path.sep}.tributary${path.sep}`)),
      [],
      'nothing else in the project was deleted',
    );
    assert.ok(existsSync(path.join(project, 'tributary.yaml')));
    assert.deepEqual(await queryJson('select count(*)::int as n from shop.outer'), [{ n: 10 }]);

    // A table with another inside its folder: the other's files, and files either may own, stay.
    await ok('tables', 'create', 'shop.host', '--schema', 'schema.json');
    await ok('tables', 'append', 'shop.host', file('host.ndjson', rows(0, 3)));
    const host = await locationOf('shop.host');
    await ok('tables', 'create', 'shop.guest', '--schema', 'schema.json', '--location', `${host}/guest`);
    await ok('tables', 'append', 'shop.guest', file('guest.ndjson', rows(10, 14)));
    const guest = path.join(host, 'guest');
    const leftover = path.join(host, 'data', 'whose.parquet');
    writeFileSync(leftover, 'x');
    const guestFiles = filesUnder(guest);
    const hostFiles = filesUnder(host).filter((f) => !f.startsWith(`${guest}${path.sep}`) && f !== leftover);
    await ok('tables', 'drop', 'shop.host', '--purge');
    assert.deepEqual(
      hostFiles.filter((f) => existsSync(f)),
      [],
      "the host's files are gone",
    );
    assert.deepEqual(
      guestFiles.filter((f) => !existsSync(f)),
      [],
      "the guest's files are all there",
    );
    assert.ok(existsSync(leftover), 'a file no table names, in a folder two tables shared, stays');
    assert.deepEqual(await queryJson('select count(*)::int as n from shop.guest'), [{ n: 4 }]);
    // Alone in its folder now: the guest's drop takes everything under it.
    writeFileSync(path.join(guest, 'data', 'left-by-a-failed-write.parquet'), 'x');
    await ok('tables', 'drop', 'shop.guest', '--purge');
    assert.deepEqual(filesUnder(guest), []);
  });

  it('purges no file another table may own: under data paths other engines use, unreadable, gc.enabled=false', async () => {
    await ok('tables', 'create', 'shop.h2', '--schema', 'schema.json');
    const h2 = await locationOf('shop.h2');
    // Another engine writes shop.c's data files into h2's folder (write.data.path).
    await ok(
      'tables',
      'create',
      'shop.c',
      '--schema',
      'schema.json',
      '--property',
      `write.data.path=${h2}/cdata`,
    );
    mkdirSync(path.join(h2, 'cdata'));
    const theirs = path.join(h2, 'cdata', 'c.parquet');
    writeFileSync(theirs, 'x');
    await ok('tables', 'drop', 'shop.h2', '--purge');
    assert.ok(existsSync(theirs), "a file under another table's data path stays");
    assert.deepEqual(filesUnder(path.join(h2, 'metadata')), [], "h2's own files are gone");
    await ok('tables', 'drop', 'shop.c', '--purge');

    // A table that names files it does not own (Iceberg's gc.enabled=false) is not purged.
    await ok('tables', 'create', 'shop.snap', '--schema', 'schema.json', '--property', 'gc.enabled=false');
    const refused = await run('tables', 'drop', 'shop.snap', '--purge');
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /INVALID_INPUT.*gc\.enabled=false/);
    assert.match(await ok('tables', 'show', 'shop.snap'), /location/, 'still in the catalog');
    // Nor are its snapshots expired (which deletes the files only they reach), as in Iceberg.
    const expire = await run('tables', 'expire', 'shop.snap', '--older-than', '0s');
    assert.equal(expire.code, 1);
    assert.match(expire.stderr, /gc\.enabled=false.*expire its snapshots/);
    await ok('tables', 'drop', 'shop.snap');

    // A table whose metadata cannot be read might overlap: the purge goes on, without the sweep.
    await ok('tables', 'create', 'shop.broken', '--schema', 'schema.json');
    for (const f of filesUnder(path.join(await locationOf('shop.broken'), 'metadata'))) rmSync(f);
    await ok('tables', 'create', 'shop.h3', '--schema', 'schema.json');
    const h3 = await locationOf('shop.h3');
    const left = path.join(h3, 'left-by-a-failed-write.parquet');
    writeFileSync(left, 'x');
    await ok('tables', 'drop', 'shop.h3', '--purge');
    assert.deepEqual(filesUnder(path.join(h3, 'metadata')), []);
    assert.ok(existsSync(left), 'not swept while a table is unreadable');
    await ok('tables', 'drop', 'shop.broken');
  });
});
