import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatLsn, lsnFromKey, lsnKey, parseLsn } from './lsn.ts';
import { decodePgOutput, msToPgTimestamp, pgTimestampToMs } from './pgoutput.ts';

/** Builds protocol messages the way the server writes them. */
class Writer {
  parts: Buffer[] = [];
  byte(v: number) {
    this.parts.push(Buffer.from([v]));
    return this;
  }
  char(c: string) {
    return this.byte(c.charCodeAt(0));
  }
  int16(v: number) {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.parts.push(b);
    return this;
  }
  int32(v: number) {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.parts.push(b);
    return this;
  }
  uint32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  int64(v: bigint) {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.parts.push(b);
    return this;
  }
  string(s: string) {
    this.parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  tuple(values: Array<string | null | undefined>) {
    this.int16(values.length);
    for (const v of values) {
      if (v === null) this.char('n');
      else if (v === undefined) this.char('u');
      else {
        const bytes = Buffer.from(v, 'utf8');
        this.char('t').int32(bytes.length);
        this.parts.push(bytes);
      }
    }
    return this;
  }
  done() {
    return Buffer.concat(this.parts);
  }
}

describe('lsn', () => {
  it('parses, formats and orders', () => {
    assert.equal(parseLsn('0/16B3748'), 0x16b3748n);
    assert.equal(parseLsn('1/0'), 1n << 32n);
    assert.equal(formatLsn(parseLsn('AB/CDEF0123')), 'AB/CDEF0123');
    assert.ok(lsnKey(parseLsn('0/FFFFFFFF')) < lsnKey(parseLsn('1/0')));
    assert.equal(lsnFromKey(lsnKey(123456789n)), 123456789n);
    assert.throws(() => parseLsn('nope'), /not a PostgreSQL LSN/);
  });
});

describe('pgoutput', () => {
  it('decodes begin and commit with their LSNs and times', () => {
    const time = msToPgTimestamp(Date.UTC(2026, 10, 23, 10, 0, 0));
    const begin = decodePgOutput(new Writer().char('B').int64(0x1234n).int64(time).uint32(4000000000).done());
    assert.deepEqual(begin, {
      tag: 'begin',
      finalLsn: 0x1234n,
      commitTimeMs: Date.UTC(2026, 10, 23, 10, 0, 0),
      xid: 4000000000,
    });
    const commit = decodePgOutput(
      new Writer().char('C').byte(0).int64(0x1234n).int64(0x1260n).int64(time).done(),
    );
    assert.deepEqual(commit, {
      tag: 'commit',
      commitLsn: 0x1234n,
      endLsn: 0x1260n,
      commitTimeMs: Date.UTC(2026, 10, 23, 10, 0, 0),
    });
    assert.equal(pgTimestampToMs(0n), Date.UTC(2000, 0, 1));
  });

  it('decodes relations with key flags, types and modifiers', () => {
    const message = decodePgOutput(
      new Writer()
        .char('R')
        .uint32(16390)
        .string('public')
        .string('orders')
        .char('f')
        .int16(2)
        .byte(1)
        .string('id')
        .uint32(20)
        .int32(-1)
        .byte(0)
        .string('amount')
        .uint32(1700)
        .int32(((12 << 16) | 2) + 4)
        .done(),
    );
    assert.deepEqual(message, {
      tag: 'relation',
      oid: 16390,
      schema: 'public',
      name: 'orders',
      replicaIdentity: 'f',
      columns: [
        { name: 'id', typeOid: 20, typeMod: -1, key: true },
        { name: 'amount', typeOid: 1700, typeMod: (12 << 16) + 2 + 4, key: false },
      ],
    });
  });

  it('decodes inserts, updates (with old key or old row) and deletes, keeping NULL and unchanged TOAST apart', () => {
    assert.deepEqual(
      decodePgOutput(new Writer().char('I').uint32(7).char('N').tuple(['1', null, 'é']).done()),
      {
        tag: 'insert',
        relation: 7,
        after: ['1', null, 'é'],
      },
    );
    assert.deepEqual(
      decodePgOutput(new Writer().char('U').uint32(7).char('N').tuple(['1', undefined]).done()),
      {
        tag: 'update',
        relation: 7,
        after: ['1', undefined],
      },
    );
    assert.deepEqual(
      decodePgOutput(
        new Writer().char('U').uint32(7).char('O').tuple(['1', 'x']).char('N').tuple(['1', undefined]).done(),
      ),
      { tag: 'update', relation: 7, before: ['1', 'x'], beforeKind: 'full', after: ['1', undefined] },
    );
    assert.deepEqual(
      decodePgOutput(
        new Writer().char('U').uint32(7).char('K').tuple(['1', null]).char('N').tuple(['2', 'y']).done(),
      ),
      { tag: 'update', relation: 7, before: ['1', null], beforeKind: 'key', after: ['2', 'y'] },
    );
    assert.deepEqual(decodePgOutput(new Writer().char('D').uint32(7).char('K').tuple(['1', null]).done()), {
      tag: 'delete',
      relation: 7,
      before: ['1', null],
      beforeKind: 'key',
    });
  });

  it('decodes logical messages and truncates', () => {
    const content = Buffer.from('abc:low');
    const full = decodePgOutput(
      Buffer.concat([
        new Writer().char('M').byte(1).int64(0x99n).string('p').int32(content.length).done(),
        content,
      ]),
    );
    assert.deepEqual(full, { tag: 'message', transactional: true, lsn: 0x99n, prefix: 'p', content });
    assert.deepEqual(decodePgOutput(new Writer().char('T').int32(2).byte(0).uint32(5).uint32(6).done()), {
      tag: 'truncate',
      relations: [5, 6],
      options: 0,
    });
  });

  it('rejects what it cannot read with CDC_PROTOCOL', () => {
    assert.throws(() => decodePgOutput(Buffer.from('Z')), { code: 'CDC_PROTOCOL' });
    assert.throws(
      () => decodePgOutput(new Writer().char('I').uint32(7).char('N').int16(1).char('b').done()),
      {
        code: 'CDC_PROTOCOL',
      },
    );
    assert.throws(
      () => decodePgOutput(new Writer().char('I').uint32(7).char('N').int16(1).char('t').int32(10).done()),
      { code: 'CDC_PROTOCOL' },
    );
  });
});
