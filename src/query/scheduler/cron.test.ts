import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../../errors.ts';
import { nextRun, parseCron } from './cron.ts';

const at = (iso: string) => Date.parse(iso);
const next = (expression: string, from: string) =>
  new Date(nextRun(parseCron(expression), at(from))!).toISOString();

describe('cron', () => {
  it('finds the next time for common expressions', () => {
    assert.equal(next('* * * * *', '2026-11-23T10:00:30Z'), '2026-11-23T10:01:00.000Z');
    assert.equal(next('*/15 * * * *', '2026-11-23T10:01:00Z'), '2026-11-23T10:15:00.000Z');
    assert.equal(next('0 3 * * *', '2026-11-23T10:00:00Z'), '2026-11-24T03:00:00.000Z');
    assert.equal(next('0 9 * * mon-fri', '2026-11-27T10:00:00Z'), '2026-11-30T09:00:00.000Z'); // Fri → Mon
    assert.equal(next('30 2 1 jan,jul *', '2026-11-23T10:00:00Z'), '2027-01-01T02:30:00.000Z');
    assert.equal(next('@hourly', '2026-11-23T10:59:59Z'), '2026-11-23T11:00:00.000Z');
    assert.equal(next('0 0 * * 7', '2026-11-23T10:00:00Z'), '2026-11-29T00:00:00.000Z'); // Sunday
    assert.equal(next('5/20 * * * *', '2026-11-23T10:06:00Z'), '2026-11-23T10:25:00.000Z');
    // Day of month or day of week when both are restricted.
    assert.equal(next('0 0 13 * fri', '2026-11-23T10:00:00Z'), '2026-11-27T00:00:00.000Z');
    // As Vixie cron, a field starting with * (a step over all days too) does not count as restricted: AND.
    assert.equal(next('0 0 */2 * mon', '2026-11-23T10:00:00Z'), '2026-12-07T00:00:00.000Z');
    assert.equal(nextRun(parseCron('0 0 30 2 *'), at('2026-01-01T00:00:00Z')), undefined);
  });

  it('refuses malformed expressions', () => {
    for (const bad of ['* * * *', '60 * * * *', '* 24 * * *', '*/0 * * * *', '5-1 * * * *', 'x * * * *']) {
      assert.throws(
        () => parseCron(bad),
        (e) => isTributaryError(e, 'CONFIG_INVALID'),
        bad,
      );
    }
  });
});
