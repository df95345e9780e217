/** Every sink Tributary ships, registered for pipeline files (see core/pipeline/components.ts). */
import type { SinkDefinition } from '../core/pipeline/components.ts';
import { icebergSinkDefinition } from './iceberg/iceberg.ts';

export const sinkDefinitions: readonly SinkDefinition[] = [icebergSinkDefinition];
