/** `tributary doctor` for the webhook sink: the endpoint accepts connections. Sends no request. */
import { connect } from 'node:net';
import type { CheckResult } from '../../core/doctor.ts';
import type { WebhookSinkConfig } from './config.ts';
import { safeUrl } from './http.ts';

const LOOPBACK = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/i;

export async function checkWebhookSink(config: WebhookSinkConfig): Promise<CheckResult[]> {
  const url = new URL(config.url);
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const where = safeUrl(config.url);
  const results: CheckResult[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const socket = connect({ host, port, timeout: Math.min(config.timeout, 10_000) });
      socket.once('connect', () => {
        socket.destroy();
        resolve();
      });
      socket.once('timeout', () => {
        socket.destroy();
        reject(new Error(`no answer within ${Math.min(config.timeout, 10_000)} ms`));
      });
      socket.once('error', reject);
    });
    results.push({ status: 'pass', detail: `${where}: ${url.host} accepts connections` });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    results.push({
      status: 'fail',
      detail: `${where}: cannot connect to ${url.host}: ${code ?? (error as Error).message}`,
      fix: 'check the url and that the receiver is up and reachable from here',
    });
  }
  if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname)) {
    results.push({
      status: 'warn',
      detail: `${where}: records are sent unencrypted`,
      fix: 'use an https:// url',
    });
  }
  return results;
}
