/**
 * A decoder of PostgreSQL's `pgoutput` logical replication protocol (version 1, with logical messages:
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
 *
 * Column values arrive in PostgreSQL's text format; `undefined` marks an unchanged TOASTed value (the
 * server did not send it), `null` a SQL NULL. Converting text to JSON by type is `values.ts`'s job.
 */
import { TributaryError } from '../../errors.ts';
import type { Lsn } from './lsn.ts';

/** Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch. */
const PG_EPOCH_US = 946_684_800_000_000n;

export interface RelationColumn {
  readonly name: string;
  readonly typeOid: number;
  readonly typeMod: number;
  /** Part of the replica identity (the primary key, unless REPLICA IDENTITY says otherwise). */
  readonly key: boolean;
}

export interface RelationMessage {
  readonly tag: 'relation';
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** d = default (primary key), n = nothing, f = full, i = index. */
  readonly replicaIdentity: 'd' | 'n' | 'f' | 'i';
  readonly columns: readonly RelationColumn[];
}

/** Text values by column position; null is SQL NULL, undefined an unchanged TOASTed value not sent. */
export type TupleValues = Array<string | null | undefined>;

export type PgOutputMessage =
  | { readonly tag: 'begin'; readonly finalLsn: Lsn; readonly commitTimeMs: number; readonly xid: number }
  | {
      readonly tag: 'commit';
      readonly commitLsn: Lsn;
      readonly endLsn: Lsn;
      readonly commitTimeMs: number;
    }
  | { readonly tag: 'origin'; readonly lsn: Lsn; readonly name: string }
  | RelationMessage
  | { readonly tag: 'type'; readonly oid: number; readonly schema: string; readonly name: string }
  | { readonly tag: 'insert'; readonly relation: number; readonly after: TupleValues }
  | {
      readonly tag: 'update';
      readonly relation: number;
      /** The old key ('K', when the key changed) or the whole old row ('O', REPLICA IDENTITY FULL). */
      readonly before?: TupleValues;
      readonly beforeKind?: 'key' | 'full';
      readonly after: TupleValues;
    }
  | {
      readonly tag: 'delete';
      readonly relation: number;
      readonly before: TupleValues;
      readonly beforeKind: 'key' | 'full';
    }
  | { readonly tag: 'truncate'; readonly relations: readonly number[]; readonly options: number }
  | {
      readonly tag: 'message';
      readonly transactional: boolean;
      readonly lsn: Lsn;
      readonly prefix: string;
      readonly content: Buffer;
    };

export function pgTimestampToMs(microseconds: bigint): number {
  return Number((microseconds + PG_EPOCH_US) / 1000n);
}

export function msToPgTimestamp(ms: number): bigint {
  return BigInt(Math.round(ms)) * 1000n - PG_EPOCH_US;
}

class Reader {
  offset = 0;
  readonly buffer: Buffer;
  constructor(buffer: Buffer) {
    this.buffer = buffer;
  }
  int8(): number {
    return this.buffer.readInt8(this.offset++);
  }
  byte(): number {
    return this.buffer[this.offset++]!;
  }
  int16(): number {
    const v = this.buffer.readInt16BE(this.offset);
    this.offset += 2;
    return v;
  }
  int32(): number {
    const v = this.buffer.readInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  uint32(): number {
    const v = this.buffer.readUInt32BE(this.offset);
    this.offset += 4;
    return v;
  }
  uint64(): bigint {
    const v = this.buffer.readBigUInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  int64(): bigint {
    const v = this.buffer.readBigInt64BE(this.offset);
    this.offset += 8;
    return v;
  }
  string(): string {
    const end = this.buffer.indexOf(0, this.offset);
    if (end < 0) throw malformed('unterminated string');
    const text = this.buffer.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return text;
  }
  bytes(length: number): Buffer {
    const slice = this.buffer.subarray(this.offset, this.offset + length);
    if (slice.length !== length) throw malformed('truncated message');
    this.offset += length;
    return slice;
  }
  tuple(): TupleValues {
    const count = this.int16();
    const values: TupleValues = new Array<string | null | undefined>(count);
    for (let i = 0; i < count; i++) {
      const kind = this.byte();
      switch (kind) {
        case 0x6e: // 'n'
          values[i] = null;
          break;
        case 0x75: // 'u'
          values[i] = undefined;
          break;
        case 0x74: {
          // 't'
          const length = this.int32();
          if (this.offset + length > this.buffer.length) throw malformed('truncated column value');
          values[i] = this.buffer.toString('utf8', this.offset, this.offset + length);
          this.offset += length;
          break;
        }
        default:
          throw malformed(`column value of kind ${String.fromCharCode(kind)} (binary mode is not used)`);
      }
    }
    return values;
  }
}

function malformed(what: string): TributaryError {
  return new TributaryError('CDC_PROTOCOL', `malformed pgoutput message: ${what}`);
}

export function decodePgOutput(buffer: Buffer): PgOutputMessage {
  const r = new Reader(buffer);
  const tag = r.byte();
  switch (tag) {
    case 0x42: // 'B'
      return {
        tag: 'begin',
        finalLsn: r.uint64(),
        commitTimeMs: pgTimestampToMs(r.int64()),
        xid: r.uint32(),
      };
    case 0x43: {
      // 'C'
      r.int8(); // flags, unused
      return {
        tag: 'commit',
        commitLsn: r.uint64(),
        endLsn: r.uint64(),
        commitTimeMs: pgTimestampToMs(r.int64()),
      };
    }
    case 0x4f: // 'O'
      return { tag: 'origin', lsn: r.uint64(), name: r.string() };
    case 0x52: {
      // 'R'
      const oid = r.uint32();
      const schema = r.string();
      const name = r.string();
      const replicaIdentity = String.fromCharCode(r.byte()) as RelationMessage['replicaIdentity'];
      const count = r.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = r.int8();
        columns.push({ name: r.string(), typeOid: r.uint32(), typeMod: r.int32(), key: (flags & 1) === 1 });
      }
      return { tag: 'relation', oid, schema, name, replicaIdentity, columns };
    }
    case 0x59: // 'Y'
      return { tag: 'type', oid: r.uint32(), schema: r.string(), name: r.string() };
    case 0x49: {
      // 'I'
      const relation = r.uint32();
      if (r.byte() !== 0x4e) throw malformed('insert without a new tuple');
      return { tag: 'insert', relation, after: r.tuple() };
    }
    case 0x55: {
      // 'U'
      const relation = r.uint32();
      let kind = r.byte();
      let before: TupleValues | undefined;
      let beforeKind: 'key' | 'full' | undefined;
      if (kind === 0x4b || kind === 0x4f) {
        beforeKind = kind === 0x4b ? 'key' : 'full';
        before = r.tuple();
        kind = r.byte();
      }
      if (kind !== 0x4e) throw malformed('update without a new tuple');
      const after = r.tuple();
      return before
        ? { tag: 'update', relation, before, beforeKind, after }
        : { tag: 'update', relation, after };
    }
    case 0x44: {
      // 'D'
      const relation = r.uint32();
      const kind = r.byte();
      if (kind !== 0x4b && kind !== 0x4f) throw malformed('delete without an old key or row');
      return { tag: 'delete', relation, beforeKind: kind === 0x4b ? 'key' : 'full', before: r.tuple() };
    }
    case 0x54: {
      // 'T'
      const count = r.int32();
      const options = r.int8();
      const relations: number[] = [];
      for (let i = 0; i < count; i++) relations.push(r.uint32());
      return { tag: 'truncate', relations, options };
    }
    case 0x4d: {
      // 'M'
      const flags = r.int8();
      const lsn = r.uint64();
      const prefix = r.string();
      const length = r.int32();
      return { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content: r.bytes(length) };
    }
    default:
      throw malformed(`unknown message type ${JSON.stringify(String.fromCharCode(tag))}`);
  }
}
