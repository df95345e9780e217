/**
 * Segment-compatible endpoints: apps instrumented with a Segment SDK (analytics.js, analytics-node, the
 * mobile SDKs) send to Tributary by changing their API host. The calls map onto one configured stream
 * (`server.segment.stream`); the write key is a Tributary API key, sent as HTTP basic auth (username = key,
 * empty password) or, from analytics.js in browsers, as `writeKey` in the body — never stored.
 *
 * Like Segment's own API: `type` comes from the endpoint, `messageId` deduplicates, `receivedAt` is set,
 * and `timestamp` is corrected for the client's clock (`receivedAt - (sentAt - timestamp)`, the original
 * kept as `originalTimestamp`).
 */
import { isBigInteger } from '../core/json.ts';
import type { BodyItem } from './body.ts';
import { HttpError } from './http-error.ts';
import type { EventError } from './streams.ts';

/** Endpoint → call type; analytics.js uses the one-letter forms. */
export const SEGMENT_CALLS: Readonly<Record<string, string>> = {
  track: 'track',
  t: 'track',
  identify: 'identify',
  i: 'identify',
  page: 'page',
  p: 'page',
  screen: 'screen',
  s: 'screen',
  group: 'group',
  g: 'group',
  alias: 'alias',
  a: 'alias',
};
export const SEGMENT_BATCH = new Set(['batch', 'b', 'import']);
const TYPES = new Set(Object.values(SEGMENT_CALLS));

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !isBigInteger(value);
}

export interface SegmentBody {
  readonly items: BodyItem[];
  readonly writeKey: string | undefined;
}

/** The events of a Segment call or batch body (already parsed JSON). */
export function segmentEvents(body: unknown, endpoint: string, maxEvents: number): SegmentBody {
  const call = SEGMENT_CALLS[endpoint];
  if (!isPlainObject(body)) {
    const notArray = Array.isArray(body) ? ', not an array' : '';
    throw new HttpError(
      400,
      'INVALID_INPUT',
      `a Segment ${call ? 'call' : 'batch'} must be a JSON object${notArray}`,
      {
        hint: call
          ? `send one ${call} call as an object; several calls go to /v1/batch as {"batch": [{"type": "${call}", …}, …]}`
          : 'send {"batch": [{"type": "track", …}, …]}',
        details: { events: [{ index: null, errors: [{ path: '', message: 'must be object' }] }] },
      },
    );
  }
  const writeKey = typeof body.writeKey === 'string' ? body.writeKey : undefined;
  delete body.writeKey;
  if (call) {
    body.type = call;
    return { items: [{ index: 0, value: body }], writeKey };
  }
  const batch = body.batch;
  if (!Array.isArray(batch) || batch.length === 0) {
    throw new HttpError(400, 'INVALID_INPUT', 'a Segment batch needs a non-empty "batch" array', {
      details: {
        events: [{ index: null, errors: [{ path: '/batch', message: 'must be a non-empty array' }] }],
      },
    });
  }
  if (batch.length > maxEvents) {
    throw new HttpError(
      413,
      'PAYLOAD_TOO_LARGE',
      `the batch holds ${batch.length} events, more than ${maxEvents}`,
      {
        hint: 'split it into smaller batches',
      },
    );
  }
  const shared = isPlainObject(body.context) ? body.context : undefined;
  const items = batch.map((event: unknown, index): BodyItem => {
    if (isPlainObject(event)) {
      delete event.writeKey;
      if (shared) event.context = { ...shared, ...(isPlainObject(event.context) ? event.context : {}) };
      if (event.sentAt === undefined && body.sentAt !== undefined) event.sentAt = body.sentAt;
    }
    return { index, value: event };
  });
  return { items, writeKey };
}

function hasId(value: unknown): boolean {
  return (
    (typeof value === 'string' && value.length > 0) || (typeof value === 'number' && Number.isFinite(value))
  );
}

function parseTime(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : time;
}

/** Checks and completes one Segment event as Segment's API does; returns its errors. */
export function prepareSegmentEvent(
  event: Record<string, unknown>,
  receivedAt: number,
  newId: () => string,
): EventError[] {
  const errors: EventError[] = [];
  const type = event.type;
  if (typeof type !== 'string' || !TYPES.has(type)) {
    errors.push({ path: '/type', message: `must be one of ${[...TYPES].join(', ')}` });
    return errors;
  }
  if (!hasId(event.userId) && !hasId(event.anonymousId))
    errors.push({ path: '/userId', message: 'userId or anonymousId is required' });
  if (type === 'track' && (typeof event.event !== 'string' || event.event === ''))
    errors.push({ path: '/event', message: 'a track call needs the event name' });
  if (type === 'group' && !hasId(event.groupId)) errors.push({ path: '/groupId', message: 'is required' });
  if (type === 'alias' && !hasId(event.previousId))
    errors.push({ path: '/previousId', message: 'is required' });
  if (errors.length) return errors;
  if (event.messageId === undefined || event.messageId === null) event.messageId = newId();
  const received = new Date(receivedAt).toISOString();
  event.receivedAt = received;
  const timestamp = parseTime(event.timestamp);
  const sentAt = parseTime(event.sentAt);
  if (timestamp === undefined) {
    event.timestamp = received;
  } else if (sentAt !== undefined) {
    // Corrected for the client's clock, as Segment does — unless that leaves the dates JavaScript holds
    // (a timestamp and a sentAt hundreds of millennia apart): then the event keeps its own.
    const corrected = new Date(receivedAt - (sentAt - timestamp));
    if (!Number.isNaN(corrected.getTime())) {
      event.originalTimestamp = event.timestamp;
      event.timestamp = corrected.toISOString();
    }
  }
  return errors;
}
