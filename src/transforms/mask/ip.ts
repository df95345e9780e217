/** IP address truncation for `mask`: IPv4 to its /24, IPv6 to its /48, in canonical text (RFC 5952). */
import { isIPv4, isIPv6 } from 'node:net';

/** The address with its host part zeroed, or undefined when `text` is not an IP address. */
export function truncateIp(text: string): string | undefined {
  const address = text.trim().replace(/%.*$/, ''); // a zone id ("fe80::1%eth0") names a local interface
  if (isIPv4(address)) return truncateIpv4(address);
  if (!isIPv6(address)) return undefined;
  const hextets = expandIpv6(address);
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0] = hextets;
  // An IPv4 address written as IPv6 (::ffff:1.2.3.4) is masked as the IPv4 address it is.
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff) {
    return `::ffff:${truncateIpv4(`${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`)}`;
  }
  return formatIpv6([a, b, c, 0, 0, 0, 0, 0]);
}

function truncateIpv4(address: string): string {
  return `${address.split('.').slice(0, 3).map(Number).join('.')}.0`;
}

/** The eight 16-bit groups of a valid IPv6 address (without a zone id). */
export function expandIpv6(address: string): number[] {
  const toGroups = (part: string): number[] =>
    part === ''
      ? []
      : part.split(':').flatMap((group) => {
          if (!group.includes('.')) return [parseInt(group, 16)];
          const [w = 0, x = 0, y = 0, z = 0] = group.split('.').map(Number);
          return [(w << 8) | x, (y << 8) | z];
        });
  const [head = '', tail] = address.split('::');
  const left = toGroups(head);
  if (tail === undefined) return left;
  const right = toGroups(tail);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/** Lowercase hex without leading zeros; the longest run of two or more zero groups becomes "::". */
export function formatIpv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < groups.length;) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < groups.length && groups[end] === 0) end++;
    if (end - start > bestLength) [bestStart, bestLength] = [start, end - start];
    start = end;
  }
  const hex = groups.map((group) => group.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
