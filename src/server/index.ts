export { startServer, type DecoderServer, type ServerOptions } from './server.js';
export type { IngestHub, IngestNotice, IngestNoticeKind, IngestStats } from './hub.js';
export { DEFAULT_LIMITS, type ServerLimits } from './limits.js';
export { readTokenFile } from './auth.js';
export { runPaths } from './recording.js';
export { stderrLogger, type Logger, type LogLevel } from './log.js';
