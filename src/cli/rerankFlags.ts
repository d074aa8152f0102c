// The caption-reranking options shared by `serve`, `demo` and `eval sessions`: how many candidates the LM proposes per
// trial, how they are drawn, and what they are compared with (docs/inference.md, "Choosing among candidates").
import { MAX_RERANK_CANDIDATES } from '../inference/decoder.js';
import {
  DEFAULT_REFERENCES,
  DEFAULT_RERANK,
  MAX_RERANK_REFERENCES,
  MAX_STEER,
  type RerankGuide,
  type RerankScore,
  type RerankSetting,
} from '../inference/rerankSetting.js';
import { UserError } from '../core/errors.js';
import { numberFlag, stringFlag, type FlagSpecs, type ParsedArgs } from './args.js';

export const rerankFlagSpecs: FlagSpecs = {
  rerank: { type: 'string' },
  'rerank-strategy': { type: 'string', choices: ['beam', 'sample'] },
  'rerank-guide': { type: 'string', choices: ['readout', 'readout+ridge'] },
  'rerank-score': { type: 'string', choices: ['soft-references', 'references', 'embedding'] },
  'rerank-references': { type: 'string' },
  steer: { type: 'string' },
};

export const rerankHelp = `  --rerank N           caption candidates per trial, scored against the brain's predicted caption embedding; the
                       best is kept (default ${DEFAULT_RERANK.candidates}; 1 = the LM's greedy caption alone)
  --rerank-strategy S  sample (the greedy caption + N-1 nucleus samples, default) or beam (a beam of width N)
  --rerank-guide G     readout+ridge (the Q-Former's read-out averaged with the ridge baseline's, default) or readout
  --rerank-score S     soft-references (default): CIDEr-D against the training captions nearest to the prediction,
                       each weighted by its similarity, plus 0.1 x the candidate's mean token log-probability;
                       references: CIDEr-D against the K nearest, equally weighted; embedding: cosine of the
                       candidate's sentence embedding with the prediction
  --rerank-references K  training captions used as references by the reference scores (default
                       ${DEFAULT_REFERENCES['soft-references']} for soft-references, ${DEFAULT_REFERENCES.references} for references; at most ${MAX_RERANK_REFERENCES})
  --steer W            steer every candidate token by token towards the training captions nearest to the prediction:
                       the LM's log-probability + W x log p of their n-gram model (default ${DEFAULT_RERANK.steer}; 0 = off;
                       with --rerank 1 the steered greedy caption)`;

export function parseRerank(command: string, p: ParsedArgs): RerankSetting {
  const candidates =
    numberFlag(command, p, 'rerank', { integer: true, min: 1, max: MAX_RERANK_CANDIDATES }) ??
    DEFAULT_RERANK.candidates;
  const strategy = (stringFlag(p, 'rerank-strategy') ?? DEFAULT_RERANK.strategy) as RerankSetting['strategy'];
  const guide = (stringFlag(p, 'rerank-guide') ?? DEFAULT_RERANK.guide) as RerankGuide;
  const score = (stringFlag(p, 'rerank-score') ?? DEFAULT_RERANK.score) as RerankScore;
  const references =
    numberFlag(command, p, 'rerank-references', { integer: true, min: 1, max: MAX_RERANK_REFERENCES }) ??
    (score === 'embedding' ? DEFAULT_RERANK.references : DEFAULT_REFERENCES[score]);
  const steer = numberFlag(command, p, 'steer', { min: 0, max: MAX_STEER }) ?? DEFAULT_RERANK.steer;
  // One steered candidate still has a target (--rerank-guide); the other options choose among candidates.
  const unused = ['rerank-strategy', 'rerank-score', 'rerank-references', ...(steer > 0 ? [] : ['rerank-guide'])];
  if (candidates === 1 && unused.some((f) => stringFlag(p, f))) {
    throw new UserError(
      `${command}: --rerank-strategy, --rerank-guide, --rerank-score and --rerank-references need --rerank 2 or more (--rerank-guide also applies to --steer).`,
      2,
    );
  }
  if (score === 'embedding' && stringFlag(p, 'rerank-references')) {
    throw new UserError(
      `${command}: --rerank-references applies to --rerank-score soft-references or references only; drop it or use one of those scores.`,
      2,
    );
  }
  if (steer > 0 && strategy === 'beam' && candidates > 1)
    throw new UserError(
      `${command}: --steer works with sampled candidates; drop --rerank-strategy beam or --steer.`,
      2,
    );
  return { candidates, strategy, guide, score, references, steer };
}
