/**
 * Sort orders: parsing the CLI's "ts desc nulls last, id" into a SortOrder. As in Iceberg, the direction
 * defaults to ascending and nulls come first when ascending, last when descending. Order id 0 is reserved
 * for the unsorted order.
 */
import { TributaryError } from '../errors.ts';
import type { SortField, SortOrder } from './metadata.ts';
import { describeTerm, parsePartitionTerm, splitTerms } from './partition-spec.ts';
import type { StructType } from './types.ts';

export function unsorted(): SortOrder {
  return { 'order-id': 0, fields: [] };
}

const ORDER_SUFFIX = /\s+(asc|desc)?\s*(?:nulls[\s-]+(first|last))?\s*$/i;

/**
 * Parses "ts desc nulls last, id, bucket(16, user_id)" against a schema. Terms are columns or transforms
 * as in partition expressions. An empty text is the unsorted order (id 0); otherwise the order gets `orderId`.
 */
export function parseSortOrder(text: string, schema: StructType, orderId = 1): SortOrder {
  const terms = splitTerms(text);
  if (terms.length === 0) return unsorted();
  if (!Number.isInteger(orderId) || orderId < 1) {
    throw new TributaryError(
      'ICEBERG_INVALID_PARTITION',
      `Sort order id ${orderId} is not valid for ${JSON.stringify(text)}`,
      {
        hint: 'Order id 0 is the unsorted order; give sorted orders an id of 1 or more.',
      },
    );
  }
  const fields: SortField[] = [];
  for (const termText of terms) {
    const match = ORDER_SUFFIX.exec(` ${termText}`);
    const suffix = match && (match[1] || match[2]) ? match[0] : '';
    const expression = ` ${termText}`.slice(0, ` ${termText}`.length - suffix.length).trim();
    if (expression === '') {
      throw new TributaryError(
        'ICEBERG_INVALID_PARTITION',
        `Sort term ${JSON.stringify(termText)} names no column`,
        {
          hint: 'Write sort terms as: column [asc|desc] [nulls first|nulls last], separated by commas.',
        },
      );
    }
    const direction = (match?.[1]?.toLowerCase() ?? 'asc') as SortField['direction'];
    const nulls = match?.[2]?.toLowerCase();
    const nullOrder: SortField['null-order'] =
      nulls === undefined
        ? direction === 'asc'
          ? 'nulls-first'
          : 'nulls-last'
        : nulls === 'first'
          ? 'nulls-first'
          : 'nulls-last';
    const term = parsePartitionTerm(expression, schema);
    const transform = term.transform.toString();
    if (term.transform.name === 'void') {
      throw new TributaryError(
        'ICEBERG_INVALID_PARTITION',
        `Cannot sort by ${expression}: void makes every value null`,
        {
          hint: 'Sort by a column or by another transform of it.',
          context: { column: term.column },
        },
      );
    }
    if (fields.some((field) => field['source-id'] === term.sourceId && field.transform === transform)) {
      throw new TributaryError(
        'ICEBERG_INVALID_PARTITION',
        `Sort term ${JSON.stringify(termText)} repeats ${expression}`,
        {
          hint: 'Name each sort term once.',
          context: { column: term.column },
        },
      );
    }
    fields.push({ 'source-id': term.sourceId, transform, direction, 'null-order': nullOrder });
  }
  return { 'order-id': orderId, fields };
}

/** A sort order as text parseSortOrder reads back: "ts desc nulls last, id asc nulls first". */
export function describeSortOrder(order: SortOrder, schema: StructType): string {
  return order.fields
    .map(
      (field) =>
        `${describeTerm(field['source-id'], field.transform, schema)} ${field.direction} ${field['null-order'].replace('-', ' ')}`,
    )
    .join(', ');
}
