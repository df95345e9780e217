/**
 * Errors the HTTP API answers with: a status, a stable code (src/errors.ts), a message that says what to
 * do, and where relevant per-event details. Every error body has the shape
 * `{ "error": { "code": "…", "message": "…", "hint": "…", … } }`.
 */
import { TributaryError, type ErrorCode } from '../errors.ts';

export interface HttpErrorOptions {
  readonly hint?: string;
  /** Response headers, e.g. Retry-After. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Extra fields of the error object (per-event errors). */
  readonly details?: Readonly<Record<string, unknown>>;
  readonly cause?: unknown;
}

export class HttpError extends TributaryError {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(status: number, code: ErrorCode, message: string, options: HttpErrorOptions = {}) {
    super(code, message, {
      hint: options.hint,
      cause: options.cause,
      retryable: status === 429 || status >= 500,
    });
    this.status = status;
    this.headers = options.headers ?? {};
    this.details = options.details ?? {};
  }

  body(): { error: Record<string, unknown> } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.hint ? { hint: this.hint } : {}),
        ...this.details,
      },
    };
  }
}

export function errorBody(
  code: ErrorCode,
  message: string,
  hint?: string,
): { error: Record<string, unknown> } {
  return { error: { code, message, ...(hint ? { hint } : {}) } };
}
