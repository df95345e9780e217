/** Terminal output for commands: plain tables and a colour only when standard out is a terminal. */

const useColor = process.stdout.isTTY === true && !('NO_COLOR' in process.env);

const codes = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;
export function color(name: keyof typeof codes, text: string): string {
  return useColor ? `\u001b[${codes[name]}m${text}\u001b[0m` : text;
}

/** Visible width, ignoring colour escapes. */
function width(text: string): number {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '').length;
}

/** Rows as an aligned table with a header line. */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((header, i) =>
    Math.max(width(header), ...rows.map((row) => width(row[i] ?? ''))),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) => (i === cells.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - width(cell))))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => color('bold', h))), ...rows.map(line)].join('\n');
}
