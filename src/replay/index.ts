export { replaySession, selectRuns, type ReplayOptions, type ReplayResult } from './replay.js';
