import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { LogRecord } from './log.ts';
import { decodeBatch, encodeBatch, encodeRecords } from './record-batch.ts';

/** The layout as first written (TextEncoder, JSON.stringify): batches in existing logs have these bytes. */
function referenceEncoding(records: readonly LogRecord[], defaultTimestamp: number): Uint8Array {
  const encoder = new TextEncoder();
  const parts: number[] = [];
  const u32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    parts.push(...b);
  };
  const i32 = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, n, true);
    parts.push(...b);
  };
  u32(records.length);
  for (const record of records) {
    const t = new Uint8Array(8);
    new DataView(t.buffer).setFloat64(0, record.timestamp ?? defaultTimestamp, true);
    parts.push(...t);
    const key = record.key == null ? undefined : encoder.encode(record.key);
    const headers =
      record.headers && Object.keys(record.headers).length
        ? encoder.encode(JSON.stringify(record.headers))
        : undefined;
    for (const part of [key, headers]) {
      i32(part ? part.length : -1);
      if (part) parts.push(...part);
    }
    u32(record.value.length);
    parts.push(...record.value);
  }
  return Uint8Array.from(parts);
}

const bytes = (text: string) => new TextEncoder().encode(text);

it('encodes record batches byte for byte as before, whatever the keys and headers', () => {
  const inherited = Object.create({ inherited: 'no' }) as Record<string, string>;
  inherited.own = 'yes';
  const records: LogRecord[] = [
    { value: bytes('no key, no headers') },
    { key: null, value: new Uint8Array(0), headers: {} },
    { key: '', value: bytes('empty key'), timestamp: 5 },
    {
      key: 'public.pgbench_accounts:["1"]',
      value: bytes('{}'),
      headers: { 'cdc.pos': '00000000016B3A28.0' },
    },
    { key: 'ключ', value: bytes('non-ASCII key'), headers: { 'cdc.chunk': '{"task":"t","rows":3}' } },
    { key: 'emoji 🦫 and a lone \ud800 surrogate', value: bytes('x'), headers: { a: 'tab\there' } },
    { key: 'k', value: bytes('x'), headers: { 'back\\slash': 'é', n: '\u007f' } },
    { key: 'k', value: bytes('x'), headers: { 2: 'number-like names come first', 1: 'one', b: 'b' } },
    { key: 'k', value: bytes('x'), headers: { missing: undefined } as unknown as Record<string, string> },
    { key: 'k', value: bytes('x'), headers: { count: 3 } as unknown as Record<string, string> },
    { key: 'k', value: bytes('x'), headers: inherited },
    { key: 'k'.repeat(5000), value: new Uint8Array(70_000).fill(7), headers: { long: 'v'.repeat(3000) } },
  ];
  for (let i = 0; i < records.length; i++) {
    const one = records.slice(i, i + 1);
    assert.deepEqual(
      Buffer.from(encodeBatch(one, 1234).payload),
      Buffer.from(referenceEncoding(one, 1234)),
      `record ${i}`,
    );
  }
  const { payload, maxTimestamp } = encodeBatch(records, 1234);
  assert.deepEqual(Buffer.from(payload), Buffer.from(referenceEncoding(records, 1234)));
  assert.equal(maxTimestamp, 1234);

  const decoded = decodeBatch(payload, 't', 0, 10);
  assert.equal(decoded.length, records.length);
  assert.equal(decoded[3]!.key, 'public.pgbench_accounts:["1"]');
  assert.deepEqual(decoded[3]!.headers, { 'cdc.pos': '00000000016B3A28.0' });
  assert.equal(decoded[5]!.key, 'emoji 🦫 and a lone \ufffd surrogate');
  assert.deepEqual(decoded[6]!.headers, { 'back\\slash': 'é', n: '\u007f' });
  assert.deepEqual(decoded[10]!.headers, { own: 'yes' });
  assert.equal(decoded[2]!.timestamp, 5);
  assert.equal(decoded[11]!.value.length, 70_000);
});

it('takes NaN as no timestamp and null headers as none, and refuses a record it cannot encode', () => {
  const [record] = decodeBatch(
    encodeBatch([{ value: bytes('x'), timestamp: Number.NaN, headers: null as unknown as undefined }], 77)
      .payload,
    't',
    0,
    0,
  );
  assert.equal(record!.timestamp, 77);
  assert.deepEqual(record!.headers, {});
  for (const bad of [
    { key: 5, value: bytes('x') },
    { value: 'not bytes' },
    { value: bytes('x'), headers: { n: 1n } },
  ] as unknown as LogRecord[])
    assert.throws(() => encodeRecords([{ value: bytes('fine') }, bad], 0), {
      code: 'INVALID_INPUT',
      message: /a log record cannot be encoded/,
    });
});
