/**
 * `tributary doctor` checks of the server configuration: the port is free, the HTTP threads suit the
 * machine, the TLS files are readable and valid, and every stream can be used (its schema compiles, it has
 * a key or a signature secret).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { CheckResult, DoctorCheck } from '../core/doctor.ts';
import { createLogger } from '../core/logger.ts';
import { projectPath, type Project } from '../core/project.ts';
import { httpThreadCount } from './http-threads.ts';
import { keyAllowsIngest } from './keys.ts';
import { probePort } from './server.ts';
import { openKeyStore } from './start.ts';
import { resolveStreams } from './streams.ts';

function failure(error: unknown, fix: string): CheckResult {
  const hint = (error as { hint?: unknown }).hint;
  return {
    status: 'fail',
    detail: error instanceof Error ? error.message : String(error),
    fix: typeof hint === 'string' ? hint : fix,
  };
}

const portCheck: DoctorCheck = {
  component: 'server',
  name: 'port free',
  async run(project) {
    const { host, port } = project.platform.server;
    if (port === 0) return { status: 'pass', detail: `${host}: a free port is picked at start` };
    return probePort(host, port).then(
      (): CheckResult => ({ status: 'pass', detail: `${host}:${port} is free` }),
      (error: NodeJS.ErrnoException): CheckResult =>
        error.code === 'EADDRINUSE'
          ? {
              status: 'warn',
              detail: `${host}:${port} is in use (by Tributary itself if it is running)`,
              fix: `stop the process listening there, or set server.port`,
            }
          : {
              status: 'fail',
              detail: `cannot listen on ${host}:${port}: ${error.message}`,
              fix:
                error.code === 'EACCES'
                  ? 'ports below 1024 need privileges: use a higher server.port'
                  : 'check server.host (an address of this machine, or 0.0.0.0)',
            },
    );
  },
};

/**
 * How many threads will serve HTTP, and a warning when the setting asks for more than this machine
 * gains from: one where ports cannot be shared, or as many as its cores (the log's thread needs one).
 */
const threadsCheck: DoctorCheck = {
  component: 'server',
  name: 'HTTP threads',
  async run(project) {
    const setting = project.platform.server.threads;
    const cores = availableParallelism();
    const threads = httpThreadCount(setting, {
      threadedLog: true,
      logger: createLogger({ level: 'silent' }),
    });
    const detail = `${threads} thread(s) serve HTTP (server.threads: ${setting}; ${cores} core(s))`;
    if (setting !== 'auto' && setting > threads)
      return {
        status: 'warn',
        detail: `${detail}: more threads need SO_REUSEPORT, which Tributary uses on Linux only`,
        fix: 'set server.threads: 1 (or auto)',
      };
    if (setting !== 'auto' && setting > 1 && setting >= cores)
      return {
        status: 'warn',
        detail: `${detail}: the log commits on a thread of its own, which then shares a core with HTTP threads (on 2 cores a second HTTP thread served fewer events; see docs/ingest-performance.md)`,
        fix: 'set server.threads: auto (one per core but one)',
      };
    return { status: 'pass', detail };
  },
};

const tlsCheck: DoctorCheck = {
  component: 'server',
  name: 'TLS certificate',
  async run(project) {
    const tls = project.platform.server.tls;
    if (!tls)
      return {
        status: 'pass',
        detail: 'not configured: plain HTTP (put a TLS proxy in front, or set server.tls)',
      };
    let cert: Buffer;
    let key: Buffer;
    try {
      cert = readFileSync(projectPath(project, tls.cert));
      key = readFileSync(projectPath(project, tls.key));
    } catch (error) {
      return failure(error, 'check server.tls.cert and server.tls.key: PEM files readable by this user');
    }
    try {
      createSecureContext({ cert, key });
    } catch (error) {
      return failure(
        error,
        'the certificate and key do not form a usable pair: check both are PEM and match',
      );
    }
    const certificate = new X509Certificate(cert);
    const expires = Date.parse(certificate.validTo);
    const days = Math.floor((expires - Date.now()) / 86_400_000);
    if (days < 0)
      return {
        status: 'fail',
        detail: `${certificate.subject} expired on ${certificate.validTo}`,
        fix: 'renew the certificate',
      };
    if (days < 14)
      return {
        status: 'warn',
        detail: `${certificate.subject} expires in ${days} day(s)`,
        fix: 'renew the certificate soon',
      };
    return {
      status: 'pass',
      detail: `${certificate.subject.replace(/\n/g, ', ')}, valid for ${days} more days`,
    };
  },
};

function streamChecks(project: Project): DoctorCheck[] {
  const configured = Object.keys(project.platform.streams ?? {});
  if (configured.length === 0) return [];
  const resolveCheck: DoctorCheck = {
    component: 'server',
    name: 'streams configured',
    async run() {
      try {
        const streams = resolveStreams(project, createLogger({ level: 'silent' }));
        return { status: 'pass', detail: `${streams.size} stream(s): ${[...streams.keys()].join(', ')}` };
      } catch (error) {
        return failure(error, 'fix the streams section of tributary.yaml');
      }
    },
  };
  const keyed = Object.entries(project.platform.streams ?? {}).filter(([, config]) => config.auth === 'key');
  const keysCheck: DoctorCheck = {
    component: 'server',
    name: 'streams have keys',
    async run() {
      let store;
      try {
        store = await openKeyStore(project);
      } catch (error) {
        return failure(error, 'check catalog.uri: API keys are stored in the catalog database');
      }
      try {
        const keys = await store.list();
        const without = keyed
          .map(([name]) => name)
          .filter((name) => !keys.some((key) => keyAllowsIngest(key, name)));
        const segment = project.platform.server.segment?.stream;
        if (
          segment !== undefined &&
          !keyed.some(([name]) => name === segment) &&
          !keys.some((key) => keyAllowsIngest(key, segment))
        )
          if (project.platform.streams?.[segment]?.auth !== 'none') without.push(segment);
        if (without.length) {
          return {
            status: 'warn',
            detail: `no active API key may send to: ${without.join(', ')}`,
            fix: `create one: tributary keys create --stream ${without[0]} --name <what it is for>`,
          };
        }
        const open = Object.entries(project.platform.streams ?? {})
          .filter(([, config]) => config.auth === 'none')
          .map(([name]) => name);
        return {
          status: open.length && project.platform.server.host !== '127.0.0.1' ? 'warn' : 'pass',
          detail:
            `${keys.length} active key(s)` +
            (open.length ? `; without authentication: ${open.join(', ')}` : ''),
          ...(open.length && project.platform.server.host !== '127.0.0.1'
            ? { fix: 'streams with auth: none accept events from anyone who can reach the server' }
            : {}),
        };
      } catch (error) {
        return failure(error, 'check that the catalog database is reachable');
      } finally {
        await store.close();
      }
    },
  };
  return keyed.length || project.platform.server.segment ? [resolveCheck, keysCheck] : [resolveCheck];
}

export function serverChecks(project: Project): DoctorCheck[] {
  return [portCheck, threadsCheck, tlsCheck, ...streamChecks(project)];
}
