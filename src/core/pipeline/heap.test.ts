import assert from 'node:assert/strict';
import { it } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { batchCommitted } from './heap.ts';

it('collects the heap once enough bytes of batches were committed', async () => {
  const ref = new WeakRef({ records: Array.from({ length: 1000 }, (_, i) => ({ i })) }); // nothing else holds it
  await nextTurn(); // a WeakRef keeps its target alive until the end of the turn that made it
  batchCommitted(1024);
  assert.ok(ref.deref(), 'a small batch collects nothing');
  await nextTurn(); // deref keeps the target alive until the end of the turn too
  batchCommitted(32 * 1024 * 1024);
  await nextTurn(); // collected in the next turn, once the caller let go of its batch
  assert.equal(ref.deref(), undefined, 'the garbage was collected');
});
