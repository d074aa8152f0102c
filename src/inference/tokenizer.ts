// Text ↔ token ids through a bundle's HF `tokenizer.json`, with the maintained pure-JS @huggingface/tokenizers.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';

export interface TextTokenizer {
  encode(text: string, addSpecialTokens?: boolean): number[];
  decode(ids: number[]): string;
  tokenId(token: string): number | undefined;
}

/** Loads `tokenizer.json` (and a sibling `tokenizer_config.json` when present). */
export function loadTokenizer(path: string): TextTokenizer {
  const json = JSON.parse(readFileSync(path, 'utf8')) as object;
  const cfgPath = join(dirname(path), 'tokenizer_config.json');
  const config = existsSync(cfgPath) ? (JSON.parse(readFileSync(cfgPath, 'utf8')) as object) : {};
  const tok = new Tokenizer(json, config);
  return {
    encode: (text, addSpecialTokens = false) => tok.encode(text, { add_special_tokens: addSpecialTokens }).ids,
    decode: (ids) => (ids.length ? tok.decode(ids, { skip_special_tokens: true }).trim() : ''),
    tokenId: (t) => tok.token_to_id(t),
  };
}
