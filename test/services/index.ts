/**
 * The services tests can ask for. `useService` returns the running service's info, or — when it cannot be
 * provisioned here — a skip reason for the suite (or a failure under TRIBUTARY_REQUIRE_SERVICES=1).
 */
import { ensureService, requireServices, ServiceUnavailable, type ServiceDefinition } from './harness.ts';
import { kafka, type KafkaInfo } from './kafka.ts';
import { postgres, type PostgresInfo } from './postgres.ts';
import { pyiceberg, type PyicebergInfo } from './pyiceberg.ts';
import { s3, type S3Info } from './s3.ts';

export const services = { kafka, postgres, pyiceberg, s3 } as const;
export type ServiceName = keyof typeof services;

interface Infos {
  kafka: KafkaInfo;
  postgres: PostgresInfo;
  pyiceberg: PyicebergInfo;
  s3: S3Info;
}

export type ServiceHandle<Info> =
  { readonly info: Info; readonly skip: false } | { readonly info: undefined; readonly skip: string };

export async function useService<N extends ServiceName>(name: N): Promise<ServiceHandle<Infos[N]>> {
  try {
    const info = await ensureService(services[name] as ServiceDefinition<Infos[N]>, true);
    return { info, skip: false };
  } catch (error) {
    if (error instanceof ServiceUnavailable && !requireServices()) {
      return { info: undefined, skip: `${error.message} (set TRIBUTARY_REQUIRE_SERVICES=1 to fail instead)` };
    }
    throw error;
  }
}
