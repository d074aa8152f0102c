export { replaySession, selectRuns, type ReplayOptions, type ReplayResult } from './replay.js';
export { findBidsRuns, loadBidsRun, parseEventsTsv, readEventsTsv, type BidsRunFiles, type LoadedRun } from './bidsRun.js';
