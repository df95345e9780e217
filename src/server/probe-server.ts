/**
 * The probe endpoints of a process without the HTTP API (`tributary run <pipeline>`, `cdc run <source>`,
 * `up --no-server`): `GET /healthz` (the process answers), `GET /readyz` (health.ts: the log, the pipelines
 * and sources of this process) and `GET /metrics` (the process's registry), so that Kubernetes can probe a
 * pipeline worker as it probes the server. Plain node:http: three GETs need no framework.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { TributaryError } from '../errors.ts';
import type { Readiness } from './health.ts';

export interface ProbeServerOptions {
  readonly host: string;
  readonly port: number;
  readonly registry: Registry;
  readonly readiness: () => Promise<Readiness>;
}

export interface ProbeServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startProbeServer(options: ProbeServerOptions): Promise<ProbeServer> {
  let closing = false;
  const server = createServer((request, response) => {
    const send = (status: number, type: string, body: string) => {
      response.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      response.end(body);
    };
    const json = (status: number, body: unknown) => send(status, 'application/json', JSON.stringify(body));
    const route = request.url?.split('?')[0];
    if (request.method !== 'GET' && request.method !== 'HEAD')
      return json(405, { error: 'method not allowed' });
    if (route === '/healthz') return json(200, { status: 'ok' });
    if (route === '/readyz') {
      options.readiness().then(
        (result) => {
          const ready = result.ready && !closing;
          json(ready ? 200 : 503, {
            status: ready ? 'ok' : 'unavailable',
            ...(closing ? { detail: 'shutting down' } : {}),
            unhealthy: result.unhealthy,
            components: result.components,
          });
        },
        (error: unknown) => json(503, { status: 'unavailable', detail: String(error) }),
      );
      return;
    }
    if (route === '/metrics') {
      options.registry.metrics().then(
        (text) => send(200, options.registry.contentType, text),
        (error: unknown) => send(500, 'text/plain', String(error)),
      );
      return;
    }
    json(404, { error: 'not found: the probe port serves /healthz, /readyz and /metrics' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (cause: NodeJS.ErrnoException) =>
      reject(
        new TributaryError(
          'USAGE',
          `cannot listen for probes on ${options.host}:${options.port}: ${cause.message}`,
          {
            cause,
            hint: cause.code === 'EADDRINUSE' ? 'choose another --health-port' : 'check --health-host',
          },
        ),
      ),
    );
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: async () => {
      closing = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
