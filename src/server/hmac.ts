/**
 * Webhook signatures: HMAC-SHA256 over the raw request body with a shared secret, in the formats SaaS
 * providers use. Comparisons are constant-time; a malformed header is simply not a valid signature.
 *  - github: `X-Hub-Signature-256: sha256=<hex>` (also GitHub-compatible senders such as Gitea);
 *  - stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` over `<t>.<body>`, within a tolerance;
 *  - hex / base64: the bare digest (Shopify sends base64 in X-Shopify-Hmac-Sha256).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export type HmacFormat = 'github' | 'stripe' | 'hex' | 'base64';

export interface HmacSettings {
  readonly secret: string;
  readonly format: HmacFormat;
  /** Header name, lower-case. */
  readonly header: string;
  /** stripe: largest allowed distance between the signed timestamp and now, in ms. */
  readonly toleranceMs: number;
}

export function defaultSignatureHeader(format: HmacFormat): string {
  return format === 'stripe' ? 'stripe-signature' : 'x-hub-signature-256';
}

function digest(secret: string, ...parts: Uint8Array[]): Buffer {
  const hmac = createHmac('sha256', secret);
  for (const part of parts) hmac.update(part);
  return hmac.digest();
}

function equal(expected: Buffer, presented: Buffer): boolean {
  return expected.length === presented.length && timingSafeEqual(expected, presented);
}

const HEX_DIGEST = /^[0-9a-fA-F]{64}$/;

/** Why the signature is not valid, or undefined when it is. */
export function verifySignature(
  settings: HmacSettings,
  header: string | undefined,
  body: Uint8Array,
  now: number = Date.now(),
): string | undefined {
  if (!header) return `the ${settings.header} header is missing`;
  switch (settings.format) {
    case 'github': {
      const value = header.trim();
      if (!value.startsWith('sha256=') || !HEX_DIGEST.test(value.slice(7)))
        return `${settings.header} is not "sha256=<64 hex digits>"`;
      return equal(digest(settings.secret, body), Buffer.from(value.slice(7), 'hex'))
        ? undefined
        : 'the signature does not match the body';
    }
    case 'hex': {
      const value = header.trim();
      if (!HEX_DIGEST.test(value)) return `${settings.header} is not 64 hex digits`;
      return equal(digest(settings.secret, body), Buffer.from(value, 'hex'))
        ? undefined
        : 'the signature does not match the body';
    }
    case 'base64': {
      const value = header.trim();
      if (!/^[A-Za-z0-9+/]{43}=$/.test(value)) return `${settings.header} is not a base64 SHA-256 digest`;
      return equal(digest(settings.secret, body), Buffer.from(value, 'base64'))
        ? undefined
        : 'the signature does not match the body';
    }
    case 'stripe': {
      let timestamp: string | undefined;
      const signatures: Buffer[] = [];
      for (const part of header.split(',')) {
        const eq = part.indexOf('=');
        if (eq < 0) continue;
        const name = part.slice(0, eq).trim();
        const value = part.slice(eq + 1).trim();
        if (name === 't') timestamp = value;
        else if (name === 'v1' && HEX_DIGEST.test(value)) signatures.push(Buffer.from(value, 'hex'));
      }
      if (!timestamp || !/^\d{1,12}$/.test(timestamp) || signatures.length === 0)
        return `${settings.header} is not "t=<timestamp>,v1=<hex>"`;
      if (Math.abs(now - Number(timestamp) * 1000) > settings.toleranceMs)
        return 'the signed timestamp is outside the tolerance (a replay, or a clock out of sync)';
      const expected = digest(settings.secret, new TextEncoder().encode(`${timestamp}.`), body);
      return signatures.some((signature) => equal(expected, signature))
        ? undefined
        : 'the signature does not match the body';
    }
  }
}

/** The header value a sender would compute: for tests and for documentation examples. */
export function sign(
  settings: Pick<HmacSettings, 'secret' | 'format'>,
  body: Uint8Array,
  now = Date.now(),
): string {
  switch (settings.format) {
    case 'github':
      return `sha256=${digest(settings.secret, body).toString('hex')}`;
    case 'hex':
      return digest(settings.secret, body).toString('hex');
    case 'base64':
      return digest(settings.secret, body).toString('base64');
    case 'stripe': {
      const t = Math.floor(now / 1000);
      return `t=${t},v1=${digest(settings.secret, new TextEncoder().encode(`${t}.`), body).toString('hex')}`;
    }
  }
}
