import { createHmac } from 'node:crypto';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toJsonSchema } from '../../core/config/json-schema.ts';
import type { PipelineRecord } from '../../core/pipeline/model.ts';
import { webhookSinkSchema } from './config.ts';
import {
  backoff,
  idempotencyKey,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  requestTarget,
  safeUrl,
  signature,
} from './http.ts';

const record = (partition: number, offset: number): PipelineRecord => ({
  value: {},
  key: null,
  partition,
  offset,
  timestamp: 0,
  headers: {},
});

describe('webhook protocol', () => {
  it('signs the timestamp and the raw body with HMAC-SHA256, hex', () => {
    // RFC 4231, test case 2, with the message cut after "what": "what" is the timestamp, then ".", then the body.
    const message = 'what do ya want for nothing?';
    assert.equal(
      signature('Jefe', 'what', message.slice(5)),
      `sha256=${createHmac('sha256', 'Jefe').update('what.do ya want for nothing?').digest('hex')}`,
    );
    assert.notEqual(signature('Jefe', '1700000000', 'x'), signature('Jefe', '1700000001', 'x'));
  });

  it('derives the idempotency key from pipeline, sink and the offset ranges only', () => {
    const a = idempotencyKey('orders', 'hook', [record(0, 5), record(0, 6), record(1, 2)]);
    assert.match(a, /^[0-9a-f]{64}$/);
    assert.equal(idempotencyKey('orders', 'hook', [record(1, 2), record(0, 5), record(0, 6)]), a);
    assert.notEqual(idempotencyKey('orders', 'hook', [record(0, 5), record(0, 7), record(1, 2)]), a);
    assert.notEqual(idempotencyKey('orders', 'other', [record(0, 5), record(0, 6), record(1, 2)]), a);
    assert.notEqual(idempotencyKey('billing', 'hook', [record(0, 5), record(0, 6), record(1, 2)]), a);
  });

  it('reads Retry-After as seconds or an HTTP date, capped', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('3', now), 3000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('999999', now), MAX_RETRY_AFTER_MS);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-1', now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
  });

  it('backs off exponentially with full jitter, up to the maximum', () => {
    assert.equal(
      backoff(1, 100, 1000, () => 0.999),
      99,
    );
    assert.equal(
      backoff(3, 100, 1000, () => 0.5),
      200,
    );
    assert.equal(
      backoff(10, 100, 1000, () => 0.5),
      500,
    );
    assert.equal(
      backoff(2, 100, 1000, () => 0),
      0,
    );
  });

  it('keeps credentials, query strings and path secrets out of names and messages', () => {
    assert.equal(
      safeUrl('https://user:pw@hooks.example.com:8443/in?token=abc'),
      'https://hooks.example.com:8443/in',
    );
    assert.equal(
      safeUrl('https://hooks.slack.com/services/T000/B000/XXXXSECRET'),
      'https://hooks.slack.com/services/…',
    );
    assert.equal(safeUrl('https://example.com'), 'https://example.com/');
  });

  it('sends the credentials of a URL as basic authorization', () => {
    assert.deepEqual(requestTarget('https://al%40ice:s3cr%3At@example.com/in?x=1'), {
      url: 'https://example.com/in?x=1',
      authorization: `Basic ${Buffer.from('al@ice:s3cr:t').toString('base64')}`,
    });
    assert.deepEqual(requestTarget('https://example.com/in'), { url: 'https://example.com/in' });
    assert.equal(
      requestTarget('https://user:50%off@example.com/in').authorization,
      `Basic ${Buffer.from('user:50%off').toString('base64')}`,
    );
  });

  it('describes every configuration field, for the reference docs', () => {
    const schema = toJsonSchema(webhookSinkSchema);
    const missing = Object.entries(schema.properties ?? {}).filter(([, p]) => !p.description);
    assert.deepEqual(
      missing.map(([key]) => key),
      [],
    );
  });
});
