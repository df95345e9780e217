/**
 * The client IP of a request: the socket's peer, or — when that peer is a trusted reverse proxy
 * (`server.trusted_proxies`) — the address it says it forwarded for. X-Forwarded-For is read from the
 * right, past every trusted proxy, to the first address that is not one: a client can put anything at the
 * left of the header, but not past the proxies that appended to it. Ports (`1.2.3.4:5678`, `[::1]:443`)
 * and empty entries are skipped over; IPv4-mapped IPv6 addresses count as the IPv4 address. The per-IP
 * rate limits count an IPv6 client by its /64 (rateLimitedAs).
 */
import { BlockList, isIP } from 'node:net';
import { expandIpv6, formatIpv6 } from '../transforms/mask/ip.ts';

export class ClientIp {
  readonly #trusted: BlockList | undefined;

  /** `trusted`: IP addresses and CIDR blocks (validated by the configuration). */
  constructor(trusted: readonly string[]) {
    if (trusted.length === 0) return;
    const list = new BlockList();
    for (const entry of trusted) {
      const [address = '', bits] = entry.split('/');
      const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) list.addAddress(address, type);
      else list.addSubnet(address, Number(bits), type);
    }
    this.#trusted = list;
  }

  /** The client's address, from the socket's peer address and the X-Forwarded-For header. */
  of(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    const address = unmapped(peer ?? '');
    if (!this.#trusted || forwardedFor === undefined || !this.#isTrusted(address)) return address;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',');
    let client = address;
    for (let i = hops.length - 1; i >= 0; i--) {
      const entry = hops[i]!.trim();
      if (entry === '') continue;
      const hop = unmapped(withoutPort(entry));
      if (isIP(hop) === 0) return client; // not an address: the chain is not believed past it
      client = hop;
      if (!this.#isTrusted(hop)) return hop;
    }
    return client;
  }

  #isTrusted(address: string): boolean {
    const family = isIP(address);
    return family !== 0 && this.#trusted!.check(address, family === 6 ? 'ipv6' : 'ipv4');
  }
}

/** The address of `1.2.3.4:port` or `[v6]:port` (some proxies write ports into X-Forwarded-For). */
function withoutPort(entry: string): string {
  if (entry.startsWith('[')) {
    const end = entry.indexOf(']');
    return end > 0 ? entry.slice(1, end) : entry;
  }
  const colon = entry.indexOf(':');
  return colon > 0 && colon === entry.lastIndexOf(':') ? entry.slice(0, colon) : entry;
}

/**
 * An IPv4 address as such when it comes IPv4-mapped: ::ffff:127.0.0.1 from a dual-stack socket, and any
 * other spelling of it a proxy may write into X-Forwarded-For (::FFFF:7f00:1, 0:0:0:0:0:ffff:127.0.0.1),
 * so that the same client is stored and rate-limited as one address.
 */
function unmapped(address: string): string {
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) return address.slice(7);
  if (!/ffff/i.test(address) || isIP(address) !== 6) return address;
  const [a, b, c, d, e, f, g = 0, h = 0] = expandIpv6(address);
  return a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff
    ? `${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`
    : address;
}

/**
 * Whom a per-IP rate limit counts a client IP as: an IPv4 address as it is (also written as IPv6,
 * ::ffff:a.b.c.d), an IPv6 address by its /64 in canonical text — a host is commonly given a whole /64,
 * so it could otherwise take a new bucket with each address.
 */
export function rateLimitedAs(ip: string): string {
  if (!ip.includes(':')) return ip; // IPv4 (ClientIp gives addresses only)
  const zone = ip.indexOf('%');
  const groups = expandIpv6(zone < 0 ? ip : ip.slice(0, zone));
  const [a, b, c, d, e, f, g = 0, h = 0] = groups;
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff)
    return `${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`;
  return `${formatIpv6([...groups.slice(0, 4), 0, 0, 0, 0])}/64`;
}
