// One line per event on stderr, greppable: "<ISO time> <level> [ingest] <message>".
// Messages quote client strings (client names, stimulus ids, header values): control characters are written as
// escapes, so a client cannot break lines, forge log entries or send terminal escape sequences to the operator.
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

// C0 and C1 controls, DEL, and the Unicode bidi overrides/isolates and line/paragraph separators (matching control
// characters is this pattern's purpose).
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** The message with every control character written as a \u escape (a stack trace stays one line). */
export function oneLine(message: string): string {
  return message.replace(CONTROL, (c) => (c === '\n' ? '\\n' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

export function stderrLogger(minLevel: LogLevel = 'info'): Logger {
  const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  return (level, message) => {
    if (rank[level] < rank[minLevel]) return;
    process.stderr.write(`${new Date().toISOString()} ${level} [ingest] ${oneLine(message)}\n`);
  };
}
