import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { sign, verifySignature, type HmacSettings } from './hmac.ts';

const body = new TextEncoder().encode('{"action":"opened"}');
const settings = (format: HmacSettings['format']): HmacSettings => ({
  secret: 's3cret',
  format,
  header: format === 'stripe' ? 'stripe-signature' : 'x-hub-signature-256',
  toleranceMs: 300_000,
});

describe('webhook signatures', () => {
  it('accepts GitHub-style sha256=<hex> computed by the sender', () => {
    const digest = createHmac('sha256', 's3cret').update(body).digest('hex');
    assert.equal(verifySignature(settings('github'), `sha256=${digest}`, body), undefined);
    assert.match(verifySignature(settings('github'), `sha256=${'0'.repeat(64)}`, body)!, /does not match/);
    assert.match(verifySignature(settings('github'), digest, body)!, /sha256=/);
    assert.match(verifySignature(settings('github'), undefined, body)!, /missing/);
    const other = new TextEncoder().encode('{"action":"closed"}');
    assert.match(verifySignature(settings('github'), `sha256=${digest}`, other)!, /does not match/);
  });

  it('accepts Stripe-style t=…,v1=… within the tolerance only', () => {
    const now = 1_800_000_000_000;
    const header = sign(settings('stripe'), body, now);
    assert.equal(verifySignature(settings('stripe'), header, body, now + 1000), undefined);
    assert.equal(verifySignature(settings('stripe'), `${header},v1=${'a'.repeat(64)}`, body, now), undefined);
    assert.match(verifySignature(settings('stripe'), header, body, now + 600_000)!, /tolerance/);
    assert.match(verifySignature(settings('stripe'), 'garbage', body, now)!, /t=<timestamp>/);
  });

  it('accepts bare hex and base64 digests', () => {
    for (const format of ['hex', 'base64'] as const) {
      assert.equal(verifySignature(settings(format), sign(settings(format), body), body), undefined);
      assert.notEqual(
        verifySignature(settings(format), sign({ secret: 'other', format }, body), body),
        undefined,
      );
    }
  });
});
