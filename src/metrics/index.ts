export { CaptionScorer, scoreCaptions, type CaptionScores } from './captionScorer.js';
export { ptbTokenize, ptbTokens } from './ptbTokenizer.js';
export { bleuStats, bleuFromTotals, BleuAccumulator, type BleuStats } from './bleu.js';
export { rougeL } from './rouge.js';
export { ciderD, ciderImage, CiderCorpus, type CiderImage } from './cider.js';
