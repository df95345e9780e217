import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { it } from 'node:test';
import { createLogger } from './logger.ts';

it('writes JSON lines off a terminal and never a secret field', () => {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (chunk: Buffer) => chunks.push(chunk.toString()));
  const logger = createLogger({ destination: stream, format: 'auto' });
  logger.info({ sink: { password: 'hunter2', host: 'db' }, token: 't0k' }, 'connected to the sink');
  const line = JSON.parse(chunks.join('')) as {
    msg: string;
    sink: { password: string; host: string };
    token: string;
  };
  assert.equal(line.msg, 'connected to the sink');
  assert.equal(line.sink.host, 'db');
  assert.equal(line.sink.password, '«redacted»');
  assert.equal(line.token, '«redacted»');
});
