// streams/: real-time preprocessing of fMRI volumes (docs/preprocessing.md).
export {
  createPreprocessor,
  type Preprocessor,
  type PreprocessorOutputs,
  type VolumeTiming,
  type TrialTiming,
  type MotionReport,
  type PreprocessAlarm,
} from './preprocessor.js';
export {
  parsePreprocessConfig,
  parseConfigOverrides,
  mergeConfigSources,
  validateMaskForRun,
  type PreprocessConfig,
  type MaskImage,
} from './config.js';
export { motionCorrection, masking, detrending, zscoring, trialResponses, type RunEnd } from './operators.js';
export {
  MotionStage,
  MaskStage,
  DetrendStage,
  ZScoreStage,
  TrialStage,
  type ProcessedVolume,
  type MotionInfo,
} from './stages.js';
export { MotionCorrector, type MotionEstimate, type MotionOptions } from './motionCorrect.js';
export { IncrementalDetrender, polynomialOrder, type DetrendOptions } from './detrend.js';
export { RunningZScore, type ZScoreOptions } from './zscore.js';
export { maskIndices, maskVolume, gaussianSmooth } from './mask.js';
export {
  TrialResponseEstimator,
  windowVolumes,
  type StreamTrialResponse,
  type TrialResponseOptions,
} from './trialResponses.js';
export { doubleGammaHrf, boxcarResponse } from './hrf.js';
export { framewiseDisplacement, paramsToMatrix, matrixToParams, type MotionParams } from './rigid.js';
export { RepeatMeans, type Presentation } from './repeatMeans.js';
