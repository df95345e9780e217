/** `npm run demo` on embedded defaults: it starts, takes traffic, prints queries that return rows, and stops cleanly. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { it } from 'node:test';
import { REPO_ROOT, run } from '../services/harness.ts';

it('the demo runs a full cycle and its printed queries return rows', { timeout: 180_000 }, async () => {
  const result = await run(
    process.execPath,
    [path.join(REPO_ROOT, 'scripts', 'demo.ts'), '--duration', '25'],
    { cwd: REPO_ROOT },
  );
  assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
  assert.match(result.stdout, /First cycle done/);
  assert.match(result.stdout, /page_views\s+visitors\n\d+\s+\d+/, 'bronze.pageviews has rows');
  assert.match(result.stdout, /status\s+orders\s+amount\n\w+\s+\d+/, 'silver.orders has rows');
  assert.match(result.stdout, /day\s+orders\s+revenue\n\d{4}-/, 'gold.daily_revenue has rows');
  assert.match(result.stdout, /stage\s+rejected\nvalidate\s+\d+/, 'the DLQ has the invalid page views');
  assert.match(result.stdout, /Stopped cleanly/);
});
