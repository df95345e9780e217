/** Maintenance jobs over a pattern of tables: a table whose files may be other tables' is passed over. */
import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import type { ModelProject } from '../models/project.ts';
import { openTestLakehouse, type TestLakehouse } from '../testing.ts';
import { executeJob, type JobDefinition } from './jobs.ts';

let lake: TestLakehouse;

before(async () => {
  lake = await openTestLakehouse('tributary-jobs-test-');
  for (const name of ['shop.own', 'shop.shared']) {
    await lake.createFromSql(name, `select 1 as n`, {
      ...(name === 'shop.shared' ? { properties: { 'gc.enabled': 'false' } } : {}),
    });
    await lake.appendSql(name, `select 2 as n`);
  }
});

after(() => lake.close());

function job(kind: 'expire' | 'remove-orphan-files'): JobDefinition {
  return {
    name: kind,
    kind,
    retries: 0,
    backoffMs: 0,
    maxBackoffMs: 0,
    timeoutMs: 60_000,
    maintenance: {
      name: kind,
      kind,
      tables: ['shop.*'],
      older_than: kind === 'expire' ? -60_000 : 86_400_000,
      retain_last: 1,
    } as unknown as JobDefinition['maintenance'],
  };
}

it('expires and removes orphans in the tables it owns, and passes over one with gc.enabled=false', async () => {
  const env = {
    catalog: lake.catalog,
    project: { root: lake.dir } as unknown as ModelProject,
    signal: new AbortController().signal,
  };
  for (const kind of ['expire', 'remove-orphan-files'] as const) {
    const { tables } = (await executeJob(job(kind), env)) as { tables: Array<Record<string, unknown>> };
    const byName = new Map(tables.map((t) => [t.table, t]));
    assert.match(String(byName.get('shop.shared')?.skipped), /gc\.enabled=false/, kind);
    assert.equal(byName.get('shop.own')?.skipped, undefined, kind);
  }
  const own = await lake.catalog.loadTable({ namespace: ['shop'], name: 'own' });
  const shared = await lake.catalog.loadTable({ namespace: ['shop'], name: 'shared' });
  assert.equal(own.metadata.snapshots.length, 1, 'the owned table was expired');
  assert.equal(shared.metadata.snapshots.length, 2, 'the shared one keeps its history');
});
