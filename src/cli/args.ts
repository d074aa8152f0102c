import { parseArgs as nodeParseArgs } from 'node:util';
import { UserError } from '../core/errors.js';

/** Declares one `--flag`: `string` takes a value, `boolean` does not; `multiple` collects repeats. */
export interface FlagSpec {
  type: 'string' | 'boolean';
  default?: string | boolean;
  multiple?: boolean;
  /** Allowed values (for `string`). */
  choices?: readonly string[];
}
export type FlagSpecs = Record<string, FlagSpec>;
export interface ParsedArgs {
  flags: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/**
 * Parses argv against a spec. node:util's parseArgs splits argv (`--name value`, `--name=value`, `--`, short groups);
 * it runs non-strict and this checks its tokens, because its strict mode refuses a value that starts with a dash
 * (`--offset -2`) and its errors are multi-line and name no command. Unknown flags, missing values and values outside
 * `choices` are usage errors (exit 2), one sentence each, the first in argv order. `usage` ends the unknown-option
 * sentence (scripts that are not `mindsemantix` commands name their options there).
 */
export function parseArgs(
  command: string,
  argv: string[],
  specs: FlagSpecs,
  usage = `run \`mindsemantix ${command} --help\` for the options`,
): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const [name, spec] of Object.entries(specs)) options[name] = { type: spec.type };
  const { tokens } = nodeParseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const flags: ParsedArgs['flags'] = {};
  const positionals: string[] = [];
  for (const [name, spec] of Object.entries(specs)) if (spec.default !== undefined) flags[name] = spec.default;
  for (const t of tokens) {
    if (t.kind === 'positional') {
      positionals.push(t.value);
      continue;
    }
    if (t.kind !== 'option') continue;
    const spec = Object.hasOwn(specs, t.name) ? specs[t.name] : undefined;
    if (!spec) throw new UserError(`${command}: unknown option ${t.rawName}; ${usage}.`, 2);
    if (spec.type === 'boolean') {
      if (t.value !== undefined) throw new UserError(`${command}: ${t.rawName} takes no value.`, 2);
      flags[t.name] = true;
      continue;
    }
    const value = t.value;
    if (value === undefined) throw new UserError(`${command}: ${t.rawName} needs a value.`, 2);
    if (spec.choices && !spec.choices.includes(value)) {
      throw new UserError(`${command}: ${t.rawName} must be one of ${spec.choices.join(', ')} (got "${value}").`, 2);
    }
    if (spec.multiple) {
      const prev = flags[t.name];
      flags[t.name] = Array.isArray(prev) ? [...prev, value] : [value];
    } else flags[t.name] = value;
  }
  return { flags, positionals };
}

export function stringFlag(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags[name];
  return typeof v === 'string' ? v : undefined;
}
export function requireString(command: string, p: ParsedArgs, name: string): string {
  const v = stringFlag(p, name);
  if (v === undefined || v === '')
    throw new UserError(`${command}: --${name} is required; run \`mindsemantix ${command} --help\`.`, 2);
  return v;
}
export function numberFlag(
  command: string,
  p: ParsedArgs,
  name: string,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  const v = stringFlag(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  const bad =
    !Number.isFinite(n) ||
    (opts.integer && !Number.isInteger(n)) ||
    (opts.min !== undefined && n < opts.min) ||
    (opts.max !== undefined && n > opts.max);
  if (bad) {
    const range = [opts.min !== undefined ? `≥ ${opts.min}` : '', opts.max !== undefined ? `≤ ${opts.max}` : '']
      .filter(Boolean)
      .join(' and ');
    throw new UserError(
      `${command}: --${name} must be ${opts.integer ? 'an integer' : 'a number'}${range ? ' ' + range : ''} (got "${v}").`,
      2,
    );
  }
  return n;
}
export function boolFlag(p: ParsedArgs, name: string): boolean {
  return p.flags[name] === true;
}
