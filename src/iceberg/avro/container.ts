/**
 * Avro object container files: the magic `Obj\x01`, a metadata map (`avro.schema`, `avro.codec` and the
 * writer's own keys), a 16-byte sync marker, then blocks of (record count, byte size, records, sync marker).
 *
 * The schema JSON is written into the header byte for byte as given — Iceberg readers need its
 * `field-id` attributes — and returned as read. Writing supports the codecs `null` and `deflate` (raw
 * deflate; Iceberg's `gzip`); reading also accepts `snappy` (with its CRC-32 trailer) and `zstandard`,
 * which other engines may be configured to write. Other codecs (bzip2, xz) fail with a clear error.
 *
 * `readContainer` decodes every record with the generic codec; `openContainer` reads the header and hands
 * each decompressed block to the caller, for decoders of their own (manifests).
 */
import { randomBytes } from 'node:crypto';
import { crc32, deflateRawSync, inflateRawSync, zstdDecompressSync } from 'node:zlib';
import { TributaryError } from '../../errors.ts';
import { AvroReader, AvroWriter, compile, type AvroSchema } from './codec.ts';

export const AVRO_MAGIC: Uint8Array = Uint8Array.of(0x4f, 0x62, 0x6a, 0x01);
export const SYNC_SIZE = 16;

export type WriteCodec = 'null' | 'deflate';
export type ReadCodec = WriteCodec | 'snappy' | 'zstandard';

export interface WriteContainerOptions {
  /** Block compression; `deflate` is what Iceberg writers use by default (`write.avro.compression-codec=gzip`). */
  readonly codec?: WriteCodec;
  /** Uncompressed bytes after which a block is closed; 64 KiB by default, like Avro's Java writer. */
  readonly blockSize?: number;
  /** The sync marker; random per file unless given (tests). */
  readonly syncMarker?: Uint8Array;
}

export interface ContainerFile {
  /** The `avro.schema` header exactly as stored. */
  readonly schemaJson: string;
  /** `schemaJson` parsed. */
  readonly schema: AvroSchema;
  /** The header's metadata as UTF-8 strings, except `avro.schema` (see `schemaJson`). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly codec: ReadCodec;
  readonly syncMarker: Uint8Array;
  readonly records: unknown[];
}

export interface ReadContainerOptions {
  /** Named in error messages: the path or URI the bytes came from. */
  readonly file?: string;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8', { fatal: true });

function invalid(file: string | undefined, message: string, cause?: unknown): TributaryError {
  const where = file ? `${file}: ` : '';
  return new TributaryError('ICEBERG_INVALID_FILE', `Invalid Avro file ${where}${message}`, {
    context: file ? { file } : {},
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Writes a whole container file. */
export function writeContainer(
  schemaJson: string,
  metadata: Readonly<Record<string, string>>,
  records: Iterable<unknown>,
  options: WriteContainerOptions = {},
): Uint8Array {
  const codec = options.codec ?? 'deflate';
  if (codec !== 'null' && codec !== 'deflate') {
    throw new TributaryError('INVALID_INPUT', `Unsupported Avro codec for writing: ${String(codec)}`);
  }
  let schema: AvroSchema;
  try {
    schema = JSON.parse(schemaJson) as AvroSchema;
  } catch (cause) {
    throw new TributaryError('INVALID_INPUT', 'The Avro schema is not valid JSON', { cause });
  }
  const recordCodec = compile(schema);
  const sync = options.syncMarker ?? new Uint8Array(randomBytes(SYNC_SIZE));
  if (sync.length !== SYNC_SIZE)
    throw new TributaryError('INVALID_INPUT', 'An Avro sync marker has 16 bytes');
  const blockSize = options.blockSize ?? 64 * 1024;

  const out = new AvroWriter();
  out.writeRaw(AVRO_MAGIC);
  const header = new Map<string, Uint8Array>();
  for (const [key, value] of Object.entries(metadata)) {
    if (key === 'avro.schema' || key === 'avro.codec') {
      throw new TributaryError(
        'INVALID_INPUT',
        `Avro metadata key ${key} is reserved: it is set by the writer`,
      );
    }
    header.set(key, textEncoder.encode(value));
  }
  header.set('avro.schema', textEncoder.encode(schemaJson));
  header.set('avro.codec', textEncoder.encode(codec));
  out.writeLong(header.size);
  for (const [key, value] of header) {
    out.writeString(key);
    out.writeBytes(value);
  }
  out.writeLong(0);
  out.writeRaw(sync);

  const block = new AvroWriter();
  let count = 0;
  const flush = (): void => {
    if (count === 0) return;
    const data = block.toBytes();
    const payload = codec === 'deflate' ? new Uint8Array(deflateRawSync(data)) : data;
    out.writeLong(count);
    out.writeLong(payload.length);
    out.writeRaw(payload);
    out.writeRaw(sync);
    block.reset();
    count = 0;
  };
  for (const record of records) {
    recordCodec.write(block, record);
    count++;
    if (block.length >= blockSize) flush();
  }
  flush();
  return out.toBytes();
}

/** A container file whose header has been read; its blocks are decoded by `readBlocks`. */
export interface OpenedContainer {
  /** The `avro.schema` header exactly as stored (not parsed: callers may cache by it). */
  readonly schemaJson: string;
  /** The header's metadata as UTF-8 strings, except `avro.schema` (see `schemaJson`). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly codec: ReadCodec;
  readonly syncMarker: Uint8Array;
  /**
   * Decompresses each block once and hands it to `visit`, which must read exactly its `count` records
   * from `reader`; checks that nothing is left over and the sync marker that follows. Errors name the file.
   * Call it once.
   */
  readBlocks(visit: (reader: AvroReader, count: number, block: number) => void): void;
}

/** Names the file in an ICEBERG_INVALID_FILE error that does not yet. */
function withFile(error: unknown, file: string | undefined): unknown {
  if (
    error instanceof TributaryError &&
    error.code === 'ICEBERG_INVALID_FILE' &&
    file &&
    !error.message.includes(file)
  ) {
    return invalid(file, error.message.replace(/^Invalid Avro file /, ''), error);
  }
  return error;
}

/** Reads a container file's header; the blocks are read by the returned object's `readBlocks`. */
export function openContainer(bytes: Uint8Array, options: ReadContainerOptions = {}): OpenedContainer {
  const { file } = options;
  const reader = new AvroReader(bytes);
  try {
    const magic = reader.readView(AVRO_MAGIC.length, 'the magic');
    if (!AVRO_MAGIC.every((b, i) => magic[i] === b)) throw invalid(file, 'it does not start with Obj\\x01');

    const rawMetadata = new Map<string, Uint8Array>();
    for (;;) {
      let count = reader.readSafeLong('metadata count');
      if (count === 0) break;
      if (count < 0) {
        count = -count;
        reader.readSafeLong('metadata block size');
      }
      for (let i = 0; i < count; i++) rawMetadata.set(reader.readString(), reader.readBytesView());
    }
    const syncMarker = reader.readRaw(SYNC_SIZE, 'the sync marker');

    const metadata: Record<string, string> = {};
    for (const [key, value] of rawMetadata) {
      if (key === 'avro.schema') continue;
      try {
        metadata[key] = textDecoder.decode(value);
      } catch {
        // Binary metadata values are not used by Iceberg; keep them as Latin-1 so nothing is lost.
        metadata[key] = Buffer.from(value).toString('latin1');
      }
    }
    const schemaBytes = rawMetadata.get('avro.schema');
    if (!schemaBytes) throw invalid(file, 'its header has no avro.schema');
    const schemaJson = textDecoder.decode(schemaBytes);
    const codecName = metadata['avro.codec'] ?? 'null';
    const decompress = decompressor(codecName, file);

    const readBlocks = (visit: (reader: AvroReader, count: number, block: number) => void): void => {
      try {
        let blockIndex = 0;
        while (reader.remaining > 0) {
          const count = reader.readSafeLong('block record count');
          const size = reader.readSafeLong('block size');
          if (count < 0 || size < 0) throw invalid(file, `block ${blockIndex} has a negative count or size`);
          const payload = reader.readView(size, `block ${blockIndex}`);
          const blockReader = new AvroReader(decompress(payload, blockIndex));
          visit(blockReader, count, blockIndex);
          if (blockReader.remaining !== 0) {
            throw invalid(
              file,
              `block ${blockIndex} has ${blockReader.remaining} bytes after its ${count} records`,
            );
          }
          const marker = reader.readView(SYNC_SIZE, `the sync marker after block ${blockIndex}`);
          if (!syncMarker.every((b, i) => marker[i] === b)) {
            throw invalid(file, `the sync marker after block ${blockIndex} does not match the header's`);
          }
          blockIndex++;
        }
      } catch (error) {
        throw withFile(error, file);
      }
    };
    return { schemaJson, metadata, codec: codecName as ReadCodec, syncMarker, readBlocks };
  } catch (error) {
    throw withFile(error, file);
  }
}

/** Parses a container's `avro.schema`. */
export function parseContainerSchema(schemaJson: string, file?: string): AvroSchema {
  try {
    return JSON.parse(schemaJson) as AvroSchema;
  } catch (cause) {
    throw invalid(file, 'its avro.schema is not valid JSON', cause);
  }
}

/** Reads a whole container file: header, then every block, checking each sync marker. */
export function readContainer(bytes: Uint8Array, options: ReadContainerOptions = {}): ContainerFile {
  const container = openContainer(bytes, options);
  const schema = parseContainerSchema(container.schemaJson, options.file);
  let recordCodec;
  try {
    recordCodec = compile(schema);
  } catch (error) {
    throw withFile(error, options.file);
  }
  const records: unknown[] = [];
  container.readBlocks((reader, count) => {
    for (let i = 0; i < count; i++) records.push(recordCodec.read(reader));
  });
  const { schemaJson, metadata, codec, syncMarker } = container;
  return { schemaJson, schema, metadata, codec, syncMarker, records };
}

function decompressor(
  codec: string,
  file: string | undefined,
): (data: Uint8Array, block: number) => Uint8Array {
  switch (codec) {
    case 'null':
      return (data) => data;
    case 'deflate':
      return (data, block) => {
        try {
          const out = inflateRawSync(data);
          // A plain Uint8Array over the Buffer's memory (not a copy).
          return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
        } catch (cause) {
          throw invalid(file, `block ${block} is not valid deflate data`, cause);
        }
      };
    case 'zstandard':
      return (data, block) => {
        try {
          const out = zstdDecompressSync(data);
          return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
        } catch (cause) {
          throw invalid(file, `block ${block} is not valid zstandard data`, cause);
        }
      };
    case 'snappy':
      return (data, block) => {
        if (data.length < 4) throw invalid(file, `snappy block ${block} has no checksum`);
        const out = snappyDecompress(data.subarray(0, data.length - 4), file, block);
        const view = new DataView(data.buffer, data.byteOffset + data.length - 4, 4);
        if (crc32(out) >>> 0 !== view.getUint32(0, false)) {
          throw invalid(file, `snappy block ${block} fails its CRC-32 check`);
        }
        return out;
      };
    default:
      throw new TributaryError(
        'ICEBERG_INVALID_FILE',
        `Unsupported Avro codec ${JSON.stringify(codec)}${file ? ` in ${file}` : ''}: Tributary reads null, deflate, snappy and zstandard`,
        { context: file ? { file, codec } : { codec } },
      );
  }
}

/** Decompresses raw Snappy (no framing): a varint length, then literals and back-references. */
export function snappyDecompress(input: Uint8Array, file?: string, block = 0): Uint8Array {
  const fail = (what: string): never => {
    throw invalid(file, `snappy block ${block} is corrupt: ${what}`);
  };
  let pos = 0;
  let length = 0;
  for (let shift = 0; ; shift += 7) {
    if (pos >= input.length || shift > 28) fail('bad length');
    const b = input[pos++]!;
    length += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) break;
  }
  const out = new Uint8Array(length);
  let o = 0;
  while (pos < input.length) {
    const tag = input[pos++]!;
    const kind = tag & 3;
    if (kind === 0) {
      let n = tag >>> 2;
      if (n >= 60) {
        const extra = n - 59;
        if (pos + extra > input.length) fail('truncated literal length');
        n = 0;
        for (let i = 0; i < extra; i++) n += input[pos + i]! * 2 ** (8 * i);
        pos += extra;
      }
      n += 1;
      if (pos + n > input.length || o + n > length) fail('literal overruns');
      out.set(input.subarray(pos, pos + n), o);
      pos += n;
      o += n;
      continue;
    }
    let n: number;
    let offset: number;
    if (kind === 1) {
      if (pos + 1 > input.length) fail('truncated copy');
      n = 4 + ((tag >>> 2) & 7);
      offset = ((tag >>> 5) << 8) | input[pos++]!;
    } else if (kind === 2) {
      if (pos + 2 > input.length) fail('truncated copy');
      n = 1 + (tag >>> 2);
      offset = input[pos]! | (input[pos + 1]! << 8);
      pos += 2;
    } else {
      if (pos + 4 > input.length) fail('truncated copy');
      n = 1 + (tag >>> 2);
      offset =
        (input[pos]! | (input[pos + 1]! << 8) | (input[pos + 2]! << 16) | (input[pos + 3]! << 24)) >>> 0;
      pos += 4;
    }
    if (offset === 0 || offset > o || o + n > length) fail('copy out of range');
    for (let i = 0; i < n; i++, o++) out[o] = out[o - offset]!;
  }
  if (o !== length) fail(`expected ${length} bytes, got ${o}`);
  return out;
}
