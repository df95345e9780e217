import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crc32, zstdCompressSync } from 'node:zlib';
import { isTributaryError } from '../../errors.ts';
import { AvroWriter, compile, type AvroSchema } from './codec.ts';
import { readContainer, snappyDecompress, writeContainer } from './container.ts';

const schema: AvroSchema = {
  type: 'record',
  name: 'row',
  fields: [
    { name: 'id', type: 'long', 'field-id': 1 },
    { name: 'name', type: ['null', 'string'], default: null, 'field-id': 2 },
  ],
};
// Deliberately unusual spacing: the header must keep it byte for byte.
const schemaJson = JSON.stringify(schema, null, 1);
const rows = Array.from({ length: 500 }, (_, i) => ({
  id: BigInt(i) * 3n,
  name: i % 7 === 0 ? null : `row ${i}`,
}));

const invalidFile = (e: unknown): boolean => isTributaryError(e, 'ICEBERG_INVALID_FILE');

/** A container with a codec we do not write, built by hand. */
function handMade(codec: string, compress: (data: Uint8Array) => Uint8Array, values: unknown[]): Uint8Array {
  const out = new AvroWriter();
  out.writeRaw(Uint8Array.of(0x4f, 0x62, 0x6a, 1));
  out.writeLong(2);
  out.writeString('avro.schema');
  out.writeBytes(new TextEncoder().encode(schemaJson));
  out.writeString('avro.codec');
  out.writeBytes(new TextEncoder().encode(codec));
  out.writeLong(0);
  const sync = new Uint8Array(16).fill(7);
  out.writeRaw(sync);
  const block = new AvroWriter();
  const codecOf = compile(schema);
  for (const value of values) codecOf.write(block, value);
  const payload = compress(block.toBytes());
  out.writeLong(values.length);
  out.writeLong(payload.length);
  out.writeRaw(payload);
  out.writeRaw(sync);
  return out.toBytes();
}

/** Snappy of literals only (valid, just not compressed), with Avro's big-endian CRC-32 trailer. */
function snappyLiteral(data: Uint8Array): Uint8Array {
  const out = new AvroWriter();
  let n = data.length;
  while (n > 0x7f) {
    out.writeRaw(Uint8Array.of((n & 0x7f) | 0x80));
    n >>>= 7;
  }
  out.writeRaw(Uint8Array.of(n));
  for (let i = 0; i < data.length; i += 60000) {
    const chunk = data.subarray(i, i + 60000);
    const len = chunk.length - 1;
    out.writeRaw(Uint8Array.of(62 << 2, len & 0xff, (len >> 8) & 0xff, len >> 16)); // 3-byte length literal
    out.writeRaw(chunk);
  }
  const crc = new Uint8Array(4);
  new DataView(crc.buffer).setUint32(0, crc32(data) >>> 0, false);
  out.writeRaw(crc);
  return out.toBytes();
}

describe('Avro container files', () => {
  for (const codec of ['null', 'deflate'] as const) {
    it(`round-trips records with the ${codec} codec`, () => {
      const bytes = writeContainer(schemaJson, { 'format-version': '2', note: 'é' }, rows, { codec });
      const file = readContainer(bytes);
      assert.equal(file.schemaJson, schemaJson);
      assert.deepEqual(file.schema, schema);
      assert.equal(file.codec, codec);
      assert.deepEqual(file.metadata, { 'format-version': '2', note: 'é', 'avro.codec': codec });
      assert.deepEqual(file.records, rows);
    });
  }

  it('starts with the magic and keeps the schema JSON byte for byte in the header', () => {
    const bytes = writeContainer(schemaJson, {}, [], { codec: 'null' });
    assert.deepEqual(bytes.subarray(0, 4), Uint8Array.of(0x4f, 0x62, 0x6a, 0x01));
    assert.ok(Buffer.from(bytes).includes(Buffer.from(schemaJson)));
    assert.deepEqual(readContainer(bytes).records, []);
  });

  it('uses a random sync marker per file', () => {
    const a = readContainer(writeContainer(schemaJson, {}, rows)).syncMarker;
    const b = readContainer(writeContainer(schemaJson, {}, rows)).syncMarker;
    assert.equal(a.length, 16);
    assert.notDeepEqual(a, b);
  });

  it('splits records into blocks and reads them all back', () => {
    const bytes = writeContainer(schemaJson, {}, rows, { codec: 'null', blockSize: 100 });
    const sync = readContainer(bytes).syncMarker;
    let markers = 0;
    for (let i = 0; i + 16 <= bytes.length; i++) {
      if (sync.every((b, j) => bytes[i + j] === b)) markers++;
    }
    assert.ok(markers > 10, `expected many blocks, got ${markers - 1}`);
    assert.deepEqual(readContainer(bytes).records, rows);
  });

  it('compresses with raw deflate', () => {
    const plain = writeContainer(schemaJson, {}, rows, { codec: 'null' });
    const deflated = writeContainer(schemaJson, {}, rows, { codec: 'deflate' });
    assert.ok(deflated.length < plain.length / 2);
  });

  it('reads snappy blocks, checking their CRC-32', () => {
    const bytes = handMade('snappy', snappyLiteral, rows.slice(0, 50));
    assert.deepEqual(readContainer(bytes).records, rows.slice(0, 50));
    const corrupt = handMade(
      'snappy',
      (d) => {
        const s = snappyLiteral(d);
        s[s.length - 1]! ^= 1;
        return s;
      },
      rows.slice(0, 5),
    );
    assert.throws(
      () => readContainer(corrupt),
      (e) => invalidFile(e) && /CRC-32/.test((e as Error).message),
    );
  });

  it('decompresses snappy copies, including overlapping ones', () => {
    // "abcd" literal, then copy length 8 offset 4 (1-byte offset form), then copy length 3 offset 2 (2-byte form).
    const input = Uint8Array.of(
      15,
      3 << 2,
      0x61,
      0x62,
      0x63,
      0x64,
      0x01 | ((8 - 4) << 2),
      4,
      0x02 | ((3 - 1) << 2),
      2,
      0,
    );
    assert.equal(new TextDecoder().decode(snappyDecompress(input)), 'abcdabcdabcdcdc');
    assert.throws(() => snappyDecompress(Uint8Array.of(4, 0x01, 9)), invalidFile);
  });

  it('reads zstandard blocks', () => {
    const bytes = handMade('zstandard', (d) => new Uint8Array(zstdCompressSync(d)), rows);
    assert.deepEqual(readContainer(bytes).records, rows);
  });

  it('rejects codecs it cannot read with a clear error', () => {
    const bytes = handMade('bzip2', (d) => d, rows.slice(0, 1));
    assert.throws(
      () => readContainer(bytes, { file: 's3://b/m.avro' }),
      (e) =>
        invalidFile(e) &&
        /bzip2/.test((e as Error).message) &&
        /s3:\/\/b\/m\.avro/.test((e as Error).message),
    );
  });

  it('rejects files that are not Avro, truncated or corrupt, naming the file', () => {
    const good = writeContainer(schemaJson, {}, rows, { codec: 'null' });
    assert.throws(
      () => readContainer(new TextEncoder().encode('PAR1....'), { file: 'x.avro' }),
      (e) => {
        return invalidFile(e) && /x\.avro/.test((e as Error).message) && /Obj/.test((e as Error).message);
      },
    );
    assert.throws(
      () => readContainer(good.subarray(0, good.length - 5), { file: 'x.avro' }),
      (e) => {
        return invalidFile(e) && /x\.avro/.test((e as Error).message);
      },
    );
    const badSync = good.slice();
    badSync[badSync.length - 1]! ^= 0xff;
    assert.throws(
      () => readContainer(badSync),
      (e) => invalidFile(e) && /sync marker/.test((e as Error).message),
    );
    const badDeflate = writeContainer(schemaJson, {}, rows, { codec: 'deflate' });
    const header = readContainer(badDeflate);
    const at = Buffer.from(badDeflate).indexOf(Buffer.from(header.syncMarker)) + 16 + 6;
    const broken = badDeflate.slice();
    for (let i = at; i < at + 20; i++) broken[i] = 0xff;
    assert.throws(() => readContainer(broken), invalidFile);
  });

  it('refuses reserved metadata keys and records that do not fit the schema', () => {
    assert.throws(
      () => writeContainer(schemaJson, { 'avro.codec': 'null' }, []),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
    assert.throws(
      () => writeContainer(schemaJson, {}, [{ id: 'x' }]),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
  });
});
