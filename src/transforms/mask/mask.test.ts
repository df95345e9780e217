import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { configIssues, create, records } from '../shared/test-support.ts';
import { truncateIp } from './ip.ts';
import { maskTransform, maskValue } from './mask.ts';

const salt = 'a-salt-of-16-chars!';
const hmac = (text: string) => createHmac('sha256', salt).update(text).digest('hex');

describe('mask', () => {
  it('masks top-level and nested fields, leaving missing ones missing', async () => {
    const transform = await create(maskTransform, {
      salt,
      fields: { email: 'hash', 'user.name': 'redact', ip: 'truncate_ip', 'user.email': 'email_domain' },
    });
    const input = records([
      { email: 'ada@example.com', user: { name: 'Ada', email: 'Ada@Example.COM' }, ip: '203.0.113.77', n: 1 },
      { n: 2 },
      { email: null, user: { name: null }, ip: '2001:db8:abcd:12:0:0:0:1' },
    ]);
    const result = await transform.process(input);
    assert.deepEqual(
      result.records.map((r) => r.value),
      [
        {
          email: hmac('ada@example.com'),
          user: { name: null, email: 'example.com' },
          ip: '203.0.113.0',
          n: 1,
        },
        { n: 2 },
        { email: null, user: { name: null }, ip: '2001:db8:abcd::' },
      ],
    );
    assert.deepEqual(result.rejected, []);
    assert.equal(input[0]?.value.email, 'ada@example.com', 'the input is not mutated');
    assert.deepEqual(
      result.records.map((r) => r.offset),
      [0, 1, 2],
    );
  });

  it('hashes stably, as text, so joins still work', () => {
    assert.equal(maskValue('x', 'hash', salt), maskValue('x', 'hash', salt));
    assert.equal(maskValue(42, 'hash', salt), hmac('42'));
    assert.equal(maskValue({ a: 1 }, 'hash', salt), hmac('{"a":1}'));
    assert.notEqual(maskValue('x', 'hash', salt), maskValue('x', 'hash', `${salt}2`));
    assert.match(maskValue('x', 'hash', salt) ?? '', /^[0-9a-f]{64}$/);
  });

  it('nulls values a method cannot apply to, never passing them on', () => {
    assert.equal(maskValue('not an ip', 'truncate_ip', salt), null);
    assert.equal(maskValue(12345, 'truncate_ip', salt), null);
    assert.equal(maskValue('no-at-sign', 'email_domain', salt), null);
    assert.equal(maskValue('@example.com', 'email_domain', salt), null);
    assert.equal(maskValue('user@', 'email_domain', salt), null);
    assert.equal(maskValue({ a: 1 }, 'redact', salt), null);
  });

  it('truncates IPv4 to /24 and IPv6 to /48', () => {
    assert.equal(truncateIp('192.168.1.254'), '192.168.1.0');
    assert.equal(truncateIp('2001:0DB8:85a3:08d3:1319:8a2e:0370:7344'), '2001:db8:85a3::');
    assert.equal(truncateIp('2001:db8::1'), '2001:db8::');
    assert.equal(truncateIp('2001:0:0:1::1'), '2001::');
    assert.equal(truncateIp('::1'), '::');
    assert.equal(truncateIp('fe80::1%eth0'), 'fe80::');
    assert.equal(truncateIp('::ffff:198.51.100.23'), '::ffff:198.51.100.0');
    assert.equal(truncateIp('1.2.3'), undefined);
  });

  it('requires a salt of 16 characters when a field is hashed', () => {
    assert.deepEqual(configIssues(maskTransform, { fields: { email: 'hash' } }), [
      'salt: the hash method needs a salt: set `salt: ${MASK_SALT}` and the variable',
    ]);
    assert.deepEqual(configIssues(maskTransform, { fields: { email: 'hash' }, salt: 'short' }), [
      'salt: use at least 16 characters',
    ]);
    assert.deepEqual(configIssues(maskTransform, { fields: { ip: 'truncate_ip' } }), []);
    assert.equal(configIssues(maskTransform, { fields: { ip: 'scramble' } }).length, 1);
  });
});
