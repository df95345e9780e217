/**
 * Alerts by webhook: a POST of Slack-compatible JSON (`{"text": "…"}`), which Slack incoming webhooks,
 * Mattermost, Rocket.Chat, Google Chat and most alert routers accept. A failed delivery is retried once and
 * then reported to the caller; it never fails the job.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export type AlertEvent = 'failure' | 'sla_miss' | 'success';

export interface AlertDelivery {
  readonly ok: boolean;
  readonly status?: number;
  readonly error?: string;
}

export async function postWebhook(
  url: string,
  text: string,
  options: { timeoutMs?: number; attempts?: number } = {},
): Promise<AlertDelivery> {
  const attempts = options.attempts ?? 2;
  let last: AlertDelivery = { ok: false, error: 'not sent' };
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text }),
        signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
      });
      await response.arrayBuffer().catch(() => undefined);
      last = { ok: response.ok, status: response.status };
      if (response.ok || (response.status >= 400 && response.status < 500 && response.status !== 429))
        return last;
    } catch (error) {
      last = { ok: false, error: error instanceof Error ? error.message : String(error) };
    }
    if (attempt < attempts) await sleep(500 * attempt);
  }
  return last;
}

/** The alert text for a run: one line a person can act on. */
export function alertText(
  event: AlertEvent,
  details: {
    project?: string;
    job: string;
    runId: string;
    attempts: number;
    durationMs?: number;
    slaMs?: number;
    error?: string;
  },
): string {
  const where = details.project ? `[${details.project}] ` : '';
  const seconds = details.durationMs === undefined ? '' : ` after ${(details.durationMs / 1000).toFixed(1)}s`;
  switch (event) {
    case 'failure':
      return `${where}:red_circle: job ${details.job} failed${seconds} (${details.attempts} attempt${details.attempts === 1 ? '' : 's'}, run ${details.runId}): ${details.error ?? 'unknown error'} — see \`tributary runs show ${details.runId}\``;
    case 'sla_miss':
      return `${where}:warning: job ${details.job} missed its SLA of ${((details.slaMs ?? 0) / 1000).toFixed(0)}s (run ${details.runId}${seconds ? `, ran${seconds.replace(' after', '')}` : ', still running'})`;
    default:
      return `${where}:white_check_mark: job ${details.job} succeeded${seconds} (run ${details.runId})`;
  }
}
