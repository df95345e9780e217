/**
 * `mask`: hides personal data field by field. hash keeps values joinable (the same input and salt give
 * the same HMAC) without revealing them; redact, truncate_ip and email_domain keep less or nothing.
 * A value a method cannot apply to (not an IP address, not an email) becomes null: personal data never
 * passes unmasked, and rejecting it would copy it into the DLQ.
 */
import { createHmac } from 'node:crypto';
import { z } from 'zod';
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import type { PipelineRecord, Transform } from '../../core/pipeline/model.ts';
import { fieldMap, getField, hasField, parseFieldPath, setField } from '../shared/field-path.ts';
import type { JsonObject } from '../shared/json-value.ts';
import { truncateIp } from './ip.ts';

const METHODS = ['hash', 'redact', 'truncate_ip', 'email_domain'] as const;
type Method = (typeof METHODS)[number];

// Also the `type` field's description: the generated reference shows that one.
const SUMMARY = 'Hashes, redacts or truncates personal data (emails, IP addresses, names) field by field.';

const schema = z
  .strictObject({
    type: z.literal('mask').describe(SUMMARY),
    fields: fieldMap(
      z.enum(METHODS),
      'Field → method. hash: hex HMAC-SHA256 of the value as text, keyed with `salt` (stable, so joins ' +
        'still work). redact: null. truncate_ip: IPv4 to its /24 (last octet 0), IPv6 to its /48. ' +
        'email_domain: only the part after "@", lowercased. Missing fields stay missing; null stays null; ' +
        'a value the method cannot apply to becomes null.',
    ),
    salt: z
      .string()
      .min(16, 'use at least 16 characters')
      .optional()
      .describe(
        'Secret key of the hash method (required when a field uses it), at least 16 characters. Pass it ' +
          'through a placeholder such as ${MASK_SALT}; changing it changes every hash.',
      ),
  })
  .superRefine((config, ctx) => {
    if (config.salt === undefined && Object.values(config.fields).includes('hash')) {
      ctx.addIssue({
        code: 'custom',
        path: ['salt'],
        message: 'the hash method needs a salt: set `salt: ${MASK_SALT}` and the variable',
      });
    }
  })
  .describe(SUMMARY);

export const maskTransform: ComponentDefinition<'transform', typeof schema> = {
  kind: 'transform',
  type: 'mask',
  schema,
  async create(config) {
    const salt = config.salt ?? '';
    const masks = Object.entries(config.fields).map(([field, method]) => ({
      path: parseFieldPath(field),
      apply: (value: unknown) => maskValue(value, method, salt),
    }));
    const maskRecord = (value: JsonObject) =>
      masks.reduce(
        (result, { path, apply }) =>
          hasField(result, path) ? setField(result, path, apply(getField(result, path))) : result,
        value,
      );
    const transform: Transform = {
      name: 'mask',
      async process(records: readonly PipelineRecord[]) {
        return {
          records: records.map((record) => ({ ...record, value: maskRecord(record.value) })),
          rejected: [],
        };
      },
    };
    return transform;
  },
};

export function maskValue(value: unknown, method: Method, salt: string): string | null {
  if (value === null) return null;
  switch (method) {
    case 'redact':
      return null;
    case 'hash': {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      return createHmac('sha256', salt).update(text).digest('hex');
    }
    case 'truncate_ip':
      return typeof value === 'string' ? (truncateIp(value) ?? null) : null;
    case 'email_domain': {
      if (typeof value !== 'string') return null;
      const at = value.lastIndexOf('@');
      const domain = value
        .slice(at + 1)
        .trim()
        .toLowerCase();
      return at > 0 && domain !== '' ? domain : null;
    }
  }
}
