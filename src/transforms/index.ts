/** Every transform Tributary ships, registered for pipeline files (see core/pipeline/components.ts). */
import type { TransformDefinition } from '../core/pipeline/components.ts';

export const transformDefinitions: readonly TransformDefinition[] = [];
