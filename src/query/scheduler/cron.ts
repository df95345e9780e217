/**
 * Five-field cron expressions (minute hour day-of-month month day-of-week), evaluated in UTC, as Vixie cron
 * reads them: `*`, lists (`1,15`), ranges (`1-5`), steps (`*\/15`, `0-30/10`), month and day names
 * (`jan`, `mon-fri`), 0 or 7 for Sunday, and the macros @yearly @monthly @weekly @daily @hourly. When both
 * day fields are restricted, a day matching either runs (as cron does).
 *
 * Written here rather than taken from a package: it is ~100 lines, and the popular packages bring time-zone
 * databases and second-level fields this scheduler does not need.
 */
import { TributaryError } from '../../errors.ts';

export interface CronSchedule {
  readonly expression: string;
  readonly minutes: ReadonlySet<number>;
  readonly hours: ReadonlySet<number>;
  readonly days: ReadonlySet<number>;
  readonly months: ReadonlySet<number>;
  readonly weekdays: ReadonlySet<number>;
  readonly dayRestricted: boolean;
  readonly weekdayRestricted: boolean;
}

const MACROS: Record<string, string> = {
  '@yearly': '0 0 1 1 *',
  '@annually': '0 0 1 1 *',
  '@monthly': '0 0 1 * *',
  '@weekly': '0 0 * * 0',
  '@daily': '0 0 * * *',
  '@midnight': '0 0 * * *',
  '@hourly': '0 * * * *',
};

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function invalid(expression: string, why: string): TributaryError {
  return new TributaryError('CONFIG_INVALID', `cron expression "${expression}": ${why}`, {
    hint: 'write 5 fields, minute hour day month weekday, e.g. "*/15 * * * *" or "0 3 * * mon-fri" (UTC)',
  });
}

function parseField(
  expression: string,
  text: string,
  min: number,
  max: number,
  names: readonly string[] = [],
  nameBase = 0,
): Set<number> {
  const values = new Set<number>();
  const value = (token: string): number => {
    const index = names.indexOf(token.toLowerCase());
    const n = index >= 0 ? index + nameBase : /^\d+$/.test(token) ? Number(token) : NaN;
    if (Number.isNaN(n) || n < min || n > max)
      throw invalid(expression, `"${token}" is not in ${min}-${max}`);
    return n;
  };
  for (const part of text.split(',')) {
    const [range, stepText] = part.split('/');
    if (range === undefined || range === '') throw invalid(expression, `empty item in "${text}"`);
    const step = stepText === undefined ? 1 : Number(stepText);
    if (!Number.isInteger(step) || step < 1) throw invalid(expression, `bad step in "${part}"`);
    let from: number;
    let to: number;
    if (range === '*') {
      from = min;
      to = max;
    } else if (range.includes('-')) {
      const [a, b] = range.split('-');
      from = value(a ?? '');
      to = value(b ?? '');
      if (to < from) throw invalid(expression, `range "${range}" runs backwards`);
    } else {
      from = value(range);
      to = stepText === undefined ? from : max;
    }
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return values;
}

export function parseCron(expression: string): CronSchedule {
  const text = MACROS[expression.trim().toLowerCase()] ?? expression.trim();
  const fields = text.split(/\s+/);
  if (fields.length !== 5) throw invalid(expression, `${fields.length} fields, expected 5`);
  const [minute, hour, day, month, weekday] = fields as [string, string, string, string, string];
  const weekdays = parseField(expression, weekday, 0, 7, DAYS);
  if (weekdays.has(7)) {
    weekdays.delete(7);
    weekdays.add(0);
  }
  return {
    expression,
    minutes: parseField(expression, minute, 0, 59),
    hours: parseField(expression, hour, 0, 23),
    days: parseField(expression, day, 1, 31),
    months: parseField(expression, month, 1, 12, MONTHS, 1),
    weekdays,
    // As Vixie cron: a field starting with `*` (`*/2` too) leaves the other to decide alone (AND, not OR).
    dayRestricted: !day.startsWith('*'),
    weekdayRestricted: !weekday.startsWith('*'),
  };
}

function dayMatches(schedule: CronSchedule, date: Date): boolean {
  const dom = schedule.days.has(date.getUTCDate());
  const dow = schedule.weekdays.has(date.getUTCDay());
  if (schedule.dayRestricted && schedule.weekdayRestricted) return dom || dow;
  return dom && dow;
}

/** The first time strictly after `afterMs` (ms since epoch) the schedule fires; undefined if never (Feb 30). */
export function nextRun(schedule: CronSchedule, afterMs: number): number | undefined {
  const date = new Date(Math.floor(afterMs / 60_000) * 60_000 + 60_000);
  const limit = afterMs + 5 * 366 * 86_400_000;
  while (date.getTime() <= limit) {
    if (!schedule.months.has(date.getUTCMonth() + 1)) {
      date.setUTCMonth(date.getUTCMonth() + 1, 1);
      date.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(schedule, date)) {
      date.setUTCDate(date.getUTCDate() + 1);
      date.setUTCHours(0, 0, 0, 0);
      continue;
    }
    if (!schedule.hours.has(date.getUTCHours())) {
      date.setUTCHours(date.getUTCHours() + 1, 0, 0, 0);
      continue;
    }
    if (!schedule.minutes.has(date.getUTCMinutes())) {
      date.setUTCMinutes(date.getUTCMinutes() + 1, 0, 0);
      continue;
    }
    return date.getTime();
  }
  return undefined;
}
