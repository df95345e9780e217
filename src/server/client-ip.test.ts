import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ClientIp, rateLimitedAs } from './client-ip.ts';

it('believes X-Forwarded-For only through trusted proxies, read from the right', () => {
  const none = new ClientIp([]);
  assert.equal(none.of('10.0.0.2', '203.0.113.9'), '10.0.0.2', 'no trusted proxies: the peer');
  assert.equal(none.of('::ffff:127.0.0.1', undefined), '127.0.0.1', 'IPv4-mapped peers as IPv4');

  const proxies = new ClientIp(['10.0.0.0/8', '192.0.2.1', 'fd00::/8']);
  assert.equal(proxies.of('198.51.100.7', '203.0.113.9'), '198.51.100.7', 'an untrusted peer is the client');
  assert.equal(proxies.of('10.1.2.3', undefined), '10.1.2.3', 'a proxy without the header');
  assert.equal(proxies.of('10.1.2.3', '203.0.113.9'), '203.0.113.9');
  assert.equal(proxies.of('::ffff:10.1.2.3', '203.0.113.9'), '203.0.113.9', 'a mapped proxy address');
  for (const spelling of ['::ffff:cb00:7109', '::FFFF:203.0.113.9', '0:0:0:0:0:ffff:cb00:7109'])
    assert.equal(proxies.of('10.1.2.3', spelling), '203.0.113.9', `a client forwarded as ${spelling}`);
  assert.equal(none.of('::ffff:7f00:1', undefined), '127.0.0.1', 'a mapped peer in hex');
  assert.equal(proxies.of('10.1.2.3', '2001:db8::ffff:1'), '2001:db8::ffff:1', 'not mapped: as it is');
  // The client wrote 1.1.1.1 itself; the proxies appended what they saw.
  assert.equal(proxies.of('10.0.0.1', '1.1.1.1, 203.0.113.9, 192.0.2.1'), '203.0.113.9');
  assert.equal(
    proxies.of('10.0.0.1', ['1.1.1.1, 203.0.113.9', '10.9.9.9']),
    '203.0.113.9',
    'several headers',
  );
  assert.equal(proxies.of('fd00::1', '2001:db8::5'), '2001:db8::5', 'IPv6');
  assert.equal(proxies.of('10.0.0.1', '10.0.0.5, 10.0.0.6'), '10.0.0.5', 'all trusted: the farthest');
  assert.equal(proxies.of('10.0.0.1', 'garbage, 10.0.0.6'), '10.0.0.6', 'not past what is not an address');
  assert.equal(proxies.of('10.0.0.1', '203.0.113.9:4711'), '203.0.113.9', 'a port written by the proxy');
  assert.equal(proxies.of('10.0.0.1', '[2001:db8::1]:443'), '2001:db8::1', 'an IPv6 address with a port');
  assert.equal(proxies.of('10.0.0.1', '203.0.113.9,,10.0.0.7'), '203.0.113.9', 'empty entries skipped');
});

it('counts an IPv6 client by its /64 for rate limits, an IPv4 one by its address', () => {
  assert.equal(rateLimitedAs('203.0.113.9'), '203.0.113.9');
  assert.equal(rateLimitedAs('::ffff:203.0.113.9'), '203.0.113.9', 'IPv4-mapped');
  assert.equal(rateLimitedAs('::FFFF:cb00:7109'), '203.0.113.9', 'IPv4-mapped, in hex');
  const prefix = '2001:db8:0:1::/64';
  for (const address of ['2001:db8:0:1::1', '2001:db8::1:ffff:ffff:ffff:ffff', '2001:0DB8:0000:0001:a:b:c:d'])
    assert.equal(rateLimitedAs(address), prefix, address);
  assert.equal(rateLimitedAs('2001:db8:0:2::1'), '2001:db8:0:2::/64', 'the next /64');
  assert.equal(rateLimitedAs('fe80::1%eth0'), 'fe80::/64', 'without the zone id');
  assert.equal(rateLimitedAs('::1'), '::/64');
});
