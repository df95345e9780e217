/**
 * A project whose warehouse is on S3 (the harness's moto), through the CLI as a user runs it: doctor checks
 * the bucket and its conditional writes; pipelines append and upsert (with deletes) records from the log
 * into tables on S3; queries, compaction and an erasure read and rewrite them there; and pyiceberg, through
 * the same SQL catalog and pyarrow's S3 filesystem, reads the rows Tributary committed.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { S3Storage } from '../../src/storage/index.ts';
import { startCli, tributary } from '../cli.ts';
import { useService } from '../services/index.ts';
import { runPython, type PyicebergInfo } from '../services/pyiceberg.ts';
import type { S3Info } from '../services/s3.ts';

const s3 = await useService('s3');
const pyiceberg = await useService('pyiceberg');

describe('a project with its warehouse on S3', { skip: s3.skip || pyiceberg.skip }, () => {
  const info = s3.info as S3Info;
  const project = mkdtempSync(path.join(tmpdir(), 'tributary-s3-warehouse-'));
  const prefix = `warehouse-${randomUUID()}`;
  const warehouse = `s3://${info.bucket}/${prefix}`;
  // Credentials from placeholders, as a deployment passes them.
  const env = { S3_TEST_KEY_ID: info.accessKeyId, S3_TEST_SECRET: info.secretAccessKey };
  const run = (...args: string[]) => tributary(args, { cwd: project, env });
  const ok = async (...args: string[]) => {
    const result = await run(...args);
    assert.equal(result.code, 0, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
    return result.stdout;
  };
  const query = async (sql: string) =>
    JSON.parse(await ok('query', sql, '--format', 'json')) as Array<Record<string, unknown>>;
  const storage = new S3Storage({
    region: info.region,
    endpoint: info.endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: info.accessKeyId, secretAccessKey: info.secretAccessKey },
  });
  const objects = async (under: string) => {
    const found: string[] = [];
    for await (const entry of storage.list(`${warehouse}/${under}`)) found.push(entry.location);
    return found;
  };
  const pipeline = (name: string, yaml: string) =>
    writeFileSync(path.join(project, 'pipelines', `${name}.yaml`), yaml);
  const produce = (topic: string, records: readonly object[]) => {
    const file = path.join(project, `${randomUUID()}.ndjson`);
    writeFileSync(file, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    return ok('topics', 'produce', topic, file);
  };

  before(async () => {
    await tributary(['init', project]);
    const file = path.join(project, 'tributary.yaml');
    writeFileSync(
      file,
      readFileSync(file, 'utf8')
        .replace(/^warehouse: .*$/m, `warehouse: ${warehouse}`)
        .replace(
          /^ {2}s3:\n(?: {4}.*\n)*/m,
          `  s3: {endpoint: "${info.endpoint}", region: ${info.region}, path_style: true, ` +
            'access_key_id: "${S3_TEST_KEY_ID}", secret_access_key: "${S3_TEST_SECRET}"}\n',
        ),
    );
    mkdirSync(path.join(project, 'pipelines'), { recursive: true });
  });

  after(async () => {
    for await (const entry of storage.list(warehouse)) await storage.delete(entry.location);
    storage.destroy();
    rmSync(project, { recursive: true, force: true });
  });

  it('doctor reaches the bucket and finds that a second conditional write is refused', async () => {
    const doctor = await run('doctor');
    assert.match(
      doctor.stdout,
      new RegExp(
        `pass\\s+platform\\s+warehouse directory\\s+${warehouse}: reachable, conditional writes refuse a second writer`,
      ),
    );
    assert.equal(doctor.code, 0, doctor.stdout);
    assert.deepEqual(await objects(''), [], 'the probe object is gone');
  });

  it('appends records from the log into a table on S3, and queries it', async () => {
    pipeline(
      'clicks',
      'source: {type: topic, topic: events.clicks}\nsinks: [{type: iceberg, table: bronze.clicks, partition: "bucket(2, user)"}]\nbatch: {interval: 10ms}\n',
    );
    await produce(
      'events.clicks',
      Array.from({ length: 50 }, (_, i) => ({ id: i, user: `u${i % 5}`, page: `/p/${i}` })),
    );
    await ok('run', 'clicks', '--once');
    assert.deepEqual(
      await query('select count(*)::int as n, count(distinct user)::int as users from bronze.clicks'),
      [{ n: 50, users: 5 }],
    );
    const files = await objects('bronze/clicks');
    assert.ok(
      files.some((f) => /\/data\/user_bucket=\d\/.+\.parquet$/.test(f)),
      files.join('\n'),
    );
    assert.ok(
      files.some((f) => /\/metadata\/00001-.+\.metadata\.json$/.test(f)),
      files.join('\n'),
    );
    // Nothing is written beside the data on local disk; staging is left empty.
    assert.deepEqual(readdirSync(path.join(project, '.tributary', 'staging')), []);
    assert.ok(
      readdirSync(path.join(project, '.tributary', 'cache')).length > 0,
      'the written files are cached',
    );
  });

  it('upserts and deletes by key, compacts, and erases a person on S3', async () => {
    pipeline(
      'people',
      'source: {type: topic, topic: events.people}\nsinks: [{type: iceberg, table: silver.people, mode: upsert, key: [id], delete_column: _deleted}]\nbatch: {interval: 10ms}\n',
    );
    await produce(
      'events.people',
      Array.from({ length: 10 }, (_, i) => ({ id: i, email: `p${i}@example.com`, _deleted: false })),
    );
    await ok('run', 'people', '--once');
    await produce('events.people', [
      { id: 3, email: 'new3@example.com', _deleted: false },
      { id: 4, _deleted: true },
      { id: 10, email: 'p10@example.com', _deleted: false },
    ]);
    await ok('run', 'people', '--once');
    const expected = Array.from({ length: 11 }, (_, i) => i)
      .filter((i) => i !== 4)
      .map((i) => ({ id: i, email: i === 3 ? 'new3@example.com' : `p${i}@example.com` }));
    const people = () => query('select id::int as id, email from silver.people order by id');
    assert.deepEqual(await people(), expected);
    // A fresh cache (another machine) downloads every file it reads, delete files included.
    rmSync(path.join(project, '.tributary', 'cache'), { recursive: true, force: true });
    assert.deepEqual(await people(), expected);

    assert.match(await ok('tables', 'compact', 'silver.people'), /rewrote|compacted/i);
    assert.deepEqual(await people(), expected);

    const erased = await ok('erase', '--where', "email = 'p7@example.com'", '--tables', 'silver.people');
    // One row, in one rewritten file; older snapshots expired; no file on S3 still holds it.
    assert.match(erased, /silver\.people\s+1\s+1\s+\d+\s+\d+\s+0\n/);
    assert.deepEqual(
      await people(),
      expected.filter((p) => p.id !== 7),
    );
  });

  it('answers the query API from the S3 tables', async () => {
    const created = JSON.parse(
      await ok('keys', 'create', '--name', 'analyst', '--role', 'query', '--table', '*', '--json'),
    ) as { key: string };
    const serve = startCli(['serve', '--port', '0'], project, { env });
    try {
      const url = await serve.url;
      const response = await fetch(`${url}/v1/query`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${created.key}` },
        body: JSON.stringify({ sql: "select count(*)::int as n from bronze.clicks where user = 'u1'" }),
      });
      assert.equal(response.status, 200, await response.clone().text());
      assert.deepEqual(((await response.json()) as { rows: unknown[] }).rows, [{ n: 10 }]);
      serve.child.kill('SIGTERM');
      assert.equal(await serve.exited, 0, serve.stderr());
    } finally {
      serve.child.kill('SIGKILL');
    }
  });

  it('pyiceberg reads the tables from S3 through the same SQL catalog', async () => {
    const script = `
import json, os
from pyiceberg.catalog.sql import SqlCatalog
catalog = SqlCatalog("tributary", uri="sqlite:///" + os.environ["CATALOG_DB"], **{
    "s3.endpoint": os.environ["S3_ENDPOINT"],
    "s3.access-key-id": os.environ["S3_TEST_KEY_ID"],
    "s3.secret-access-key": os.environ["S3_TEST_SECRET"],
    "s3.region": os.environ["S3_REGION"],
    "s3.force-virtual-addressing": False,
})
clicks = catalog.load_table("bronze.clicks").scan().to_arrow()
people = catalog.load_table("silver.people").scan().to_arrow().sort_by("id")
print(json.dumps({
    "location": catalog.load_table("bronze.clicks").location(),
    "clicks": clicks.num_rows,
    "users": sorted(set(clicks.column("user").to_pylist())),
    "people": [[r["id"], r["email"]] for r in people.to_pylist()],
}))
`;
    const stdout = await runPython(pyiceberg.info as PyicebergInfo, script, {
      ...env,
      CATALOG_DB: path.join(project, '.tributary', 'catalog.db'),
      S3_ENDPOINT: info.endpoint,
      S3_REGION: info.region,
    });
    const seen = JSON.parse(stdout.trim().split('\n').pop() ?? 'null') as {
      location: string;
      clicks: number;
      users: string[];
      people: Array<[number, string]>;
    };
    assert.equal(seen.location, `${warehouse}/bronze/clicks`);
    assert.equal(seen.clicks, 50);
    assert.deepEqual(seen.users, ['u0', 'u1', 'u2', 'u3', 'u4']);
    assert.deepEqual(
      seen.people,
      [0, 1, 2, 3, 5, 6, 8, 9, 10].map((i) => [i, i === 3 ? 'new3@example.com' : `p${i}@example.com`]),
    );
    assert.ok(existsSync(path.join(project, '.tributary', 'catalog.db')));
  });
});
