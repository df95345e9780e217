import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import { openCatalog } from './open.ts';

it('createNamespaceIfAbsent succeeds for every writer when several create the namespace at once', async () => {
  // Two pipelines of one `tributary up` writing bronze.a and bronze.b both create `bronze` on their first batch.
  const dir = mkdtempSync(path.join(tmpdir(), 'tributary-catalog-'));
  try {
    const settings = { name: 'tributary', uri: 'sqlite:catalog.db', warehouse: 'warehouse', baseDir: dir };
    const catalogs = [await openCatalog(settings), await openCatalog(settings)];
    try {
      await Promise.all(
        [...catalogs, ...catalogs].map((catalog) => catalog.createNamespaceIfAbsent(['bronze'])),
      );
      assert.equal(await catalogs[0]!.registry.namespaceExists(['bronze']), true);
    } finally {
      for (const catalog of catalogs) catalog.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
