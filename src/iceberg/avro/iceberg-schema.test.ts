import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTributaryError } from '../../errors.ts';
import type { IcebergType, IcebergValue, StructType } from '../types.ts';
import { decode, encode, expandSchema, type AvroRecordSchema } from './codec.ts';
import {
  avroToIcebergStruct,
  avroToIcebergType,
  bigintToTwosComplement,
  bytesToUuid,
  decimalRequiredBytes,
  fromAvroValue,
  icebergToAvroSchema,
  sanitizeAvroName,
  toAvroValue,
  twosComplementToBigint,
  uuidToBytes,
} from './iceberg-schema.ts';

const everyType: StructType = {
  type: 'struct',
  fields: [
    { id: 1, name: 'b', required: true, type: 'boolean' },
    { id: 2, name: 'i', required: false, type: 'int', doc: 'an int' },
    { id: 3, name: 'l', required: true, type: 'long' },
    { id: 4, name: 'f', required: true, type: 'float' },
    { id: 5, name: 'd', required: true, type: 'double' },
    { id: 6, name: 'dec', required: false, type: 'decimal(9, 2)' },
    { id: 7, name: 'day', required: true, type: 'date' },
    { id: 8, name: 't', required: true, type: 'time' },
    { id: 9, name: 'ts', required: true, type: 'timestamp' },
    { id: 10, name: 'tstz', required: true, type: 'timestamptz' },
    { id: 11, name: 's', required: true, type: 'string' },
    { id: 12, name: 'u', required: false, type: 'uuid' },
    { id: 13, name: 'fx', required: true, type: 'fixed[3]' },
    { id: 14, name: 'bin', required: true, type: 'binary' },
    {
      id: 15,
      name: 'nested',
      required: false,
      type: { type: 'struct', fields: [{ id: 16, name: 'x', required: true, type: 'long' }] },
    },
    {
      id: 17,
      name: 'tags',
      required: true,
      type: { type: 'list', 'element-id': 18, element: 'string', 'element-required': false },
    },
    {
      id: 19,
      name: 'props',
      required: true,
      type: {
        type: 'map',
        'key-id': 20,
        key: 'string',
        'value-id': 21,
        value: 'int',
        'value-required': true,
      },
    },
    {
      id: 22,
      name: 'by_id',
      required: true,
      type: {
        type: 'map',
        'key-id': 23,
        key: 'int',
        'value-id': 24,
        value: 'decimal(9, 2)',
        'value-required': false,
      },
    },
    { id: 25, name: 'u2', required: true, type: 'uuid' },
  ],
};

describe('Iceberg → Avro schemas', () => {
  it('follows the spec (Appendix A) and the Java/pyiceberg naming', () => {
    const avro = icebergToAvroSchema(everyType, 'row');
    assert.equal(avro.name, 'row');
    const byName = new Map(avro.fields.map((f) => [f.name, f]));
    assert.deepEqual(byName.get('b'), { name: 'b', type: 'boolean', 'field-id': 1 });
    assert.deepEqual(byName.get('i'), {
      name: 'i',
      type: ['null', 'int'],
      default: null,
      doc: 'an int',
      'field-id': 2,
    });
    assert.deepEqual(byName.get('dec')!.type, [
      'null',
      { type: 'fixed', name: 'decimal_9_2', size: 4, logicalType: 'decimal', precision: 9, scale: 2 },
    ]);
    assert.deepEqual(byName.get('day')!.type, { type: 'int', logicalType: 'date' });
    assert.deepEqual(byName.get('t')!.type, { type: 'long', logicalType: 'time-micros' });
    assert.deepEqual(byName.get('ts')!.type, {
      type: 'long',
      logicalType: 'timestamp-micros',
      'adjust-to-utc': false,
    });
    assert.deepEqual(byName.get('tstz')!.type, {
      type: 'long',
      logicalType: 'timestamp-micros',
      'adjust-to-utc': true,
    });
    assert.deepEqual(byName.get('u')!.type, [
      'null',
      { type: 'fixed', name: 'uuid_fixed', size: 16, logicalType: 'uuid' },
    ]);
    assert.deepEqual(byName.get('fx')!.type, { type: 'fixed', name: 'fixed_3', size: 3 });
    assert.deepEqual(byName.get('bin')!.type, 'bytes');
    assert.deepEqual(byName.get('nested')!.type, [
      'null',
      { type: 'record', name: 'r15', fields: [{ name: 'x', type: 'long', 'field-id': 16 }] },
    ]);
    assert.deepEqual(byName.get('tags')!.type, {
      type: 'array',
      items: ['null', 'string'],
      'element-id': 18,
    });
    assert.deepEqual(byName.get('props')!.type, { type: 'map', values: 'int', 'key-id': 20, 'value-id': 21 });
    assert.deepEqual(byName.get('by_id')!.type, {
      type: 'array',
      items: {
        type: 'record',
        name: 'k23_v24',
        fields: [
          { name: 'key', type: 'int', 'field-id': 23 },
          {
            name: 'value',
            type: [
              'null',
              {
                type: 'fixed',
                name: 'decimal_9_2_2',
                size: 4,
                logicalType: 'decimal',
                precision: 9,
                scale: 2,
              },
            ],
            default: null,
            'field-id': 24,
          },
        ],
      },
      logicalType: 'map',
    });
    // A second named type of the same shape gets a unique name rather than a by-name reference.
    assert.deepEqual(byName.get('u2')!.type, {
      type: 'fixed',
      name: 'uuid_fixed_2',
      size: 16,
      logicalType: 'uuid',
    });
  });

  it('sanitizes field names that are not valid in Avro, keeping the original', () => {
    assert.equal(sanitizeAvroName('ok_name1'), 'ok_name1');
    assert.equal(sanitizeAvroName('1st'), '_1st');
    assert.equal(sanitizeAvroName('a-b.c'), 'a_x2Db_x2Ec');
    assert.equal(sanitizeAvroName('é'), 'é');
    const avro = icebergToAvroSchema(
      { type: 'struct', fields: [{ id: 1, name: 'my col', required: true, type: 'int' }] },
      'r',
    );
    assert.deepEqual(avro.fields[0], {
      name: 'my_x20col',
      'iceberg-field-name': 'my col',
      type: 'int',
      'field-id': 1,
    });
    assert.equal(avroToIcebergStruct(avro).fields[0]!.name, 'my col');
  });

  it('uses the minimal fixed size for decimals', () => {
    const python = [
      1, 1, 2, 2, 3, 3, 4, 4, 4, 5, 5, 6, 6, 6, 7, 7, 8, 8, 9, 9, 9, 10, 10, 11, 11, 11, 12, 12, 13, 13, 13,
    ];
    python.push(14, 14, 15, 15, 16, 16, 16, 17);
    for (let p = 1; p <= 39; p++) assert.equal(decimalRequiredBytes(p), python[p - 1], `precision ${p}`);
  });

  it('converts back to the same Iceberg struct', () => {
    const avro = expandSchema(icebergToAvroSchema(everyType, 'row')) as AvroRecordSchema;
    assert.deepEqual(avroToIcebergStruct(avro), everyType);
  });

  it('reads other writers’ spellings', () => {
    assert.equal(
      avroToIcebergType({ type: 'bytes', logicalType: 'decimal', precision: 20, scale: 0 }),
      'decimal(20, 0)',
    );
    assert.equal(avroToIcebergType({ type: 'string', logicalType: 'uuid' }), 'uuid');
    assert.equal(avroToIcebergType({ type: 'long', logicalType: 'timestamp-micros' }), 'timestamp');
    assert.equal(avroToIcebergType({ type: 'enum', name: 'e', symbols: ['A'] }), 'string');
    assert.equal(avroToIcebergType({ type: 'int', logicalType: 'something-new' }), 'int');
    assert.throws(
      () => avroToIcebergType({ type: 'long', logicalType: 'timestamp-nanos', 'adjust-to-utc': false }),
      (e) => isTributaryError(e, 'ICEBERG_UNSUPPORTED'),
    );
    assert.throws(
      () => avroToIcebergStruct({ type: 'record', name: 'r', fields: [{ name: 'a', type: 'int' }] }),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE') && /field-id/.test((e as Error).message),
    );
    assert.throws(
      () => avroToIcebergType(['null', 'int', 'string']),
      (e) => isTributaryError(e, 'ICEBERG_INVALID_FILE'),
    );
  });
});

describe('Iceberg values ↔ Avro values', () => {
  it('converts uuids to 16 bytes and back to the canonical form', () => {
    const uuid = 'f79c3e09-677c-4bbd-a479-3f349cb785e7';
    assert.equal(Buffer.from(uuidToBytes(uuid)).toString('hex'), 'f79c3e09677c4bbda4793f349cb785e7');
    assert.equal(bytesToUuid(uuidToBytes(uuid.toUpperCase())), uuid);
    assert.throws(
      () => toAvroValue('uuid', 'not-a-uuid'),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
  });

  it('converts decimals to two’s complement of the minimal size', () => {
    assert.deepEqual(toAvroValue('decimal(9, 2)', 12345n), Uint8Array.of(0, 0, 0x30, 0x39));
    assert.deepEqual(toAvroValue('decimal(9, 2)', -1n), Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    assert.deepEqual(toAvroValue('decimal(3, 0)', -129n), Uint8Array.of(0xff, 0x7f));
    assert.equal(fromAvroValue('decimal(9, 2)', Uint8Array.of(0xff, 0xff, 0xcf, 0xc7)), -12345n);
    assert.equal(fromAvroValue('decimal(38, 0)', bigintToTwosComplement(-(10n ** 37n), 16)), -(10n ** 37n));
    assert.equal(twosComplementToBigint(Uint8Array.of(0x80)), -128n);
    assert.throws(
      () => toAvroValue('decimal(3, 0)', 1000n),
      (e) => isTributaryError(e, 'INVALID_INPUT'),
    );
  });

  it('round-trips a row of every type through the Avro encoding', () => {
    const row: Record<string, IcebergValue> = {
      b: true,
      i: null,
      l: -(2n ** 62n),
      f: 1.5,
      d: Math.PI,
      dec: -98765n,
      day: 19000,
      t: 3_600_000_000n,
      ts: 1_700_000_000_000_000n,
      tstz: -5n,
      s: 'ünï',
      u: '00000000-0000-4000-8000-000000000001',
      fx: Uint8Array.of(1, 2, 3),
      bin: new Uint8Array(0),
      nested: { x: 9n },
      tags: ['a', null],
      props: new Map([['k', 1]]),
      by_id: new Map<IcebergValue, IcebergValue>([
        [1, 100n],
        [2, null],
      ]),
      u2: 'ffffffff-ffff-ffff-ffff-ffffffffffff',
    };
    const schema = icebergToAvroSchema(everyType, 'row');
    const decoded = decode(schema, encode(schema, toAvroValue(everyType, row)));
    assert.deepEqual(fromAvroValue(everyType, decoded), row);
  });

  it('rejects values of the wrong type', () => {
    const cases: [IcebergType, IcebergValue][] = [
      ['int', 1n],
      ['int', 1.5],
      ['long', 'x'],
      ['date', 1n],
      ['string', 3],
      ['fixed[2]', Uint8Array.of(1)],
      ['boolean', 0],
    ];
    for (const [type, value] of cases) {
      assert.throws(
        () => toAvroValue(type, value),
        (e) => isTributaryError(e, 'INVALID_INPUT'),
        JSON.stringify(type),
      );
    }
  });
});
