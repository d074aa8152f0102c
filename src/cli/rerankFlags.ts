// The caption-reranking options shared by `serve`, `demo` and `eval sessions`: how many candidates the LM proposes per
// trial, how they are drawn, and what they are compared with (docs/inference.md, "Choosing among candidates").
import { MAX_RERANK_CANDIDATES } from '../inference/decoder.js';
import { DEFAULT_RERANK, type RerankGuide, type RerankSetting } from '../inference/rerankSetting.js';
import { UserError } from '../core/errors.js';
import { numberFlag, stringFlag, type FlagSpecs, type ParsedArgs } from './args.js';

export const rerankFlagSpecs: FlagSpecs = {
  rerank: { type: 'string' },
  'rerank-strategy': { type: 'string', choices: ['beam', 'sample'] },
  'rerank-guide': { type: 'string', choices: ['readout', 'readout+ridge'] },
};

export const rerankHelp = `  --rerank N           caption candidates per trial; the one whose sentence embedding is closest to the brain's
                       predicted caption embedding is kept (default ${DEFAULT_RERANK.candidates}; 1 = the LM's greedy caption alone)
  --rerank-strategy S  sample (the greedy caption + N-1 nucleus samples, default) or beam (a beam of width N)
  --rerank-guide G     readout+ridge (the Q-Former's read-out averaged with the ridge baseline's, default) or readout`;

export function parseRerank(command: string, p: ParsedArgs): RerankSetting {
  const candidates = numberFlag(command, p, 'rerank', { integer: true, min: 1, max: MAX_RERANK_CANDIDATES }) ?? DEFAULT_RERANK.candidates;
  const strategy = (stringFlag(p, 'rerank-strategy') ?? DEFAULT_RERANK.strategy) as RerankSetting['strategy'];
  const guide = (stringFlag(p, 'rerank-guide') ?? DEFAULT_RERANK.guide) as RerankGuide;
  if (candidates === 1 && (stringFlag(p, 'rerank-strategy') || stringFlag(p, 'rerank-guide'))) {
    throw new UserError(`${command}: --rerank-strategy and --rerank-guide need --rerank 2 or more.`, 2);
  }
  return { candidates, strategy, guide };
}
