// One line per event on stderr, greppable: "<ISO time> <level> [ingest] <message>".
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

export function stderrLogger(minLevel: LogLevel = 'info'): Logger {
  const rank: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };
  return (level, message) => {
    if (rank[level] < rank[minLevel]) return;
    process.stderr.write(`${new Date().toISOString()} ${level} [ingest] ${message}\n`);
  };
}
