/** Every sink Tributary ships, registered for pipeline files (see core/pipeline/components.ts). */
import type { SinkDefinition } from '../core/pipeline/components.ts';
import { fileSinkDefinition } from './file/index.ts';
import { icebergSinkDefinition } from './iceberg/iceberg.ts';
import { postgresSinkDefinition } from './postgres/index.ts';
import { stdoutSinkDefinition } from './stdout/index.ts';
import { webhookSinkDefinition } from './webhook/index.ts';

export const sinkDefinitions: readonly SinkDefinition[] = [
  icebergSinkDefinition,
  postgresSinkDefinition,
  webhookSinkDefinition,
  stdoutSinkDefinition,
  fileSinkDefinition,
];
