/**
 * Just enough of FlatBuffers to write Arrow IPC metadata (Message, Schema, RecordBatch): a tree of tables,
 * strings and vectors serialized parent first. Every reference in a FlatBuffer is an unsigned offset
 * pointing forward, so writing a parent before its children and patching each offset once the child is
 * placed gives a valid buffer without the usual back-to-front builder. Scalars are always written (never
 * left to the schema's default), and every scalar sits at its natural alignment from the buffer's start,
 * as verifiers (Arrow C++'s included) check.
 */

export type FbScalar =
  | { readonly kind: 'bool' | 'u8'; readonly value: number | boolean }
  | { readonly kind: 'i16' | 'i32'; readonly value: number }
  | { readonly kind: 'i64'; readonly value: bigint };

export type FbNode =
  | { readonly kind: 'table'; readonly fields: ReadonlyArray<FbScalar | FbNode | undefined> }
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'vector'; readonly items: readonly FbNode[] }
  /** A vector of structs given as raw little-endian bytes (`count` elements aligned to `align`). */
  | { readonly kind: 'structs'; readonly bytes: Uint8Array; readonly count: number; readonly align: number };

export const fb = {
  bool: (value: boolean): FbScalar => ({ kind: 'bool', value }),
  u8: (value: number): FbScalar => ({ kind: 'u8', value }),
  i16: (value: number): FbScalar => ({ kind: 'i16', value }),
  i32: (value: number): FbScalar => ({ kind: 'i32', value }),
  i64: (value: bigint | number): FbScalar => ({ kind: 'i64', value: BigInt(value) }),
  table: (...fields: Array<FbScalar | FbNode | undefined>): FbNode => ({ kind: 'table', fields }),
  string: (value: string): FbNode => ({ kind: 'string', value }),
  vector: (items: readonly FbNode[]): FbNode => ({ kind: 'vector', items }),
  structs: (bytes: Uint8Array, count: number, align = 8): FbNode => ({
    kind: 'structs',
    bytes,
    count,
    align,
  }),
};

const SIZE = { bool: 1, u8: 1, i16: 2, i32: 4, i64: 8 } as const;

function isScalar(field: FbScalar | FbNode): field is FbScalar {
  return field.kind in SIZE;
}

class Writer {
  #bytes = new Uint8Array(256);
  #view = new DataView(this.#bytes.buffer);
  length = 0;

  #ensure(extra: number): void {
    if (this.length + extra <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < this.length + extra) size *= 2;
    const bytes = new Uint8Array(size);
    bytes.set(this.#bytes.subarray(0, this.length));
    this.#bytes = bytes;
    this.#view = new DataView(bytes.buffer);
  }

  /** Pads with zeros until `length % to === at`. */
  align(to: number, at = 0): void {
    this.#ensure(to);
    while (this.length % to !== at) this.#bytes[this.length++] = 0;
  }

  reserve(count: number): number {
    this.#ensure(count);
    const at = this.length;
    this.#bytes.fill(0, at, at + count);
    this.length += count;
    return at;
  }

  bytes(data: Uint8Array): void {
    this.#ensure(data.length);
    this.#bytes.set(data, this.length);
    this.length += data.length;
  }

  set(at: number, scalar: FbScalar): void {
    const v = this.#view;
    switch (scalar.kind) {
      case 'bool':
      case 'u8':
        return v.setUint8(at, Number(scalar.value));
      case 'i16':
        return v.setInt16(at, scalar.value, true);
      case 'i32':
        return v.setInt32(at, scalar.value, true);
      case 'i64':
        return v.setBigInt64(at, scalar.value, true);
    }
  }

  u16(at: number, value: number): void {
    this.#view.setUint16(at, value, true);
  }

  u32(at: number, value: number): void {
    this.#view.setUint32(at, value, true);
  }

  result(): Uint8Array {
    return this.#bytes.slice(0, this.length);
  }
}

function write(w: Writer, node: FbNode): number {
  switch (node.kind) {
    case 'string': {
      const text = new TextEncoder().encode(node.value);
      w.align(4);
      const at = w.reserve(4);
      w.u32(at, text.length);
      w.bytes(text);
      w.reserve(1); // the terminating NUL
      return at;
    }
    case 'vector': {
      w.align(4);
      const at = w.reserve(4 + 4 * node.items.length);
      w.u32(at, node.items.length);
      node.items.forEach((item, i) => {
        const slot = at + 4 + 4 * i;
        w.u32(slot, write(w, item) - slot);
      });
      return at;
    }
    case 'structs': {
      w.align(Math.max(4, node.align), Math.max(4, node.align) - 4); // elements start aligned
      const at = w.reserve(4);
      w.u32(at, node.count);
      w.bytes(node.bytes);
      return at;
    }
    case 'table':
      return writeTable(w, node.fields);
  }
}

function writeTable(w: Writer, fields: ReadonlyArray<FbScalar | FbNode | undefined>): number {
  // Inline layout after the 4-byte vtable offset: widest fields first, each at its alignment.
  const slots: Array<{ index: number; size: number; offset: number }> = [];
  fields.forEach((field, index) => {
    if (field) slots.push({ index, size: isScalar(field) ? SIZE[field.kind] : 4, offset: 0 });
  });
  slots.sort((a, b) => b.size - a.size || a.index - b.index);
  const tableAlign = slots.some((s) => s.size === 8) ? 8 : 4;
  let size = 4;
  for (const slot of slots) {
    size = Math.ceil(size / slot.size) * slot.size;
    slot.offset = size;
    size += slot.size;
  }
  const vtableSize = 4 + 2 * fields.length;
  w.align(2);
  const vtable = w.reserve(vtableSize);
  w.u16(vtable, vtableSize);
  w.u16(vtable + 2, size);
  for (const slot of slots) w.u16(vtable + 4 + 2 * slot.index, slot.offset);
  w.align(tableAlign);
  const table = w.reserve(size);
  w.set(table, { kind: 'i32', value: table - vtable });
  for (const slot of slots) {
    const field = fields[slot.index]!;
    if (isScalar(field)) w.set(table + slot.offset, field);
  }
  for (const slot of slots) {
    const field = fields[slot.index]!;
    if (isScalar(field)) continue;
    const at = table + slot.offset;
    w.u32(at, write(w, field) - at);
  }
  return table;
}

/** A finished FlatBuffer whose root is `root` (a table), padded to a multiple of 8 bytes. */
export function finish(root: FbNode): Uint8Array {
  const w = new Writer();
  w.reserve(4);
  w.u32(0, write(w, root));
  w.align(8);
  return w.result();
}
