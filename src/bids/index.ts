export {
  findBidsRuns,
  loadBidsRun,
  parseEventsTsv,
  readEventsTsv,
  type BidsRunFiles,
  type LoadedRun,
} from './bidsRun.js';
export { datasetRoot, fitStimulusFile, readStimulusFile, resolveStimulusFile, StimulusFiles } from './stimulusFile.js';
