/** The `webhook` sink: records POSTed to an HTTP endpoint, at-least-once with idempotency keys. */
import type { ComponentDefinition } from '../../core/pipeline/components.ts';
import { checkWebhookSink } from './check.ts';
import { webhookSinkSchema } from './config.ts';
import { WebhookSink } from './webhook-sink.ts';

export { webhookSinkSchema, type WebhookSinkConfig } from './config.ts';
export { WebhookSink, type WebhookSinkOptions } from './webhook-sink.ts';
export { idempotencyKey, signature } from './http.ts';

export const webhookSinkDefinition: ComponentDefinition<'sink', typeof webhookSinkSchema> = {
  kind: 'sink',
  type: 'webhook',
  schema: webhookSinkSchema,
  check: (config) => checkWebhookSink(config),
  async create(config, context) {
    return new WebhookSink({
      config,
      pipeline: context.pipeline,
      sourceTopic: context.sourceTopic,
      log: context.log,
      logger: context.logger,
    });
  },
};
