import assert from 'node:assert/strict';
import { it } from 'node:test';
import { REDACTED, redactSecrets, redactUriPassword } from './redact.ts';

it('redacts secret keys, secret-file values and passwords in URIs', () => {
  const redacted = redactSecrets(
    {
      catalog: { uri: 'postgresql://app:hunter2@db:5432/cat' },
      sink: { password: 'p', api_key: 'k', host: 'h' },
      name: 'from-file',
    },
    [['name']],
  );
  assert.deepEqual(redacted, {
    catalog: { uri: `postgresql://app:${REDACTED}@db:5432/cat` },
    sink: { password: REDACTED, api_key: REDACTED, host: 'h' },
    name: REDACTED,
  });
  assert.equal(redactUriPassword('http://example.com/a:b@c'), 'http://example.com/a:b@c');
  // A password written without escaping: spaces, slashes and @ in it stay hidden.
  assert.equal(
    redactUriPassword('postgresql://app:pa ss/w@rd@127.0.0.1:5/db'),
    `postgresql://app:${REDACTED}@127.0.0.1:5/db`,
  );
  assert.equal(
    redactUriPassword('postgresql://app:s3cr?etPW@db:5432/orders'),
    `postgresql://app:${REDACTED}@db:5432/orders`,
  );
  assert.equal(
    redactUriPassword('postgresql://app:1234@db/orders'),
    `postgresql://app:${REDACTED}@db/orders`,
  );
  // A port is not a password, whatever the query holds.
  const hook = 'https://hooks.example.com:8443/notify?to=ops@example.com';
  assert.equal(redactUriPassword(hook), hook);
});
