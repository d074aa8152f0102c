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

/** Parses argv against a spec; unknown flags and missing values are usage errors with a sentence that says what to do. */
export function parseArgs(command: string, argv: string[], specs: FlagSpecs): ParsedArgs {
  const flags: ParsedArgs['flags'] = {};
  const positionals: string[] = [];
  for (const [name, spec] of Object.entries(specs)) if (spec.default !== undefined) flags[name] = spec.default;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('-') || a === '-') { positionals.push(a); continue; }
    let name = a.replace(/^-{1,2}/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) { value = name.slice(eq + 1); name = name.slice(0, eq); }
    const spec = specs[name];
    if (!spec) throw new UserError(`${command}: unknown option --${name}; run \`mindsemantix ${command} --help\` for the options.`, 2);
    if (spec.type === 'boolean') {
      if (value !== undefined) throw new UserError(`${command}: --${name} takes no value.`, 2);
      flags[name] = true;
      continue;
    }
    if (value === undefined) {
      value = argv[++i];
      if (value === undefined) throw new UserError(`${command}: --${name} needs a value.`, 2);
    }
    if (spec.choices && !spec.choices.includes(value)) {
      throw new UserError(`${command}: --${name} must be one of ${spec.choices.join(', ')} (got "${value}").`, 2);
    }
    if (spec.multiple) {
      const prev = flags[name];
      flags[name] = Array.isArray(prev) ? [...prev, value] : [value];
    } else flags[name] = value;
  }
  return { flags, positionals };
}

export function stringFlag(p: ParsedArgs, name: string): string | undefined {
  const v = p.flags[name];
  return typeof v === 'string' ? v : undefined;
}
export function requireString(command: string, p: ParsedArgs, name: string): string {
  const v = stringFlag(p, name);
  if (v === undefined || v === '') throw new UserError(`${command}: --${name} is required; run \`mindsemantix ${command} --help\`.`, 2);
  return v;
}
export function numberFlag(command: string, p: ParsedArgs, name: string, opts: { min?: number; max?: number; integer?: boolean } = {}): number | undefined {
  const v = stringFlag(p, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  const bad = !Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max);
  if (bad) {
    const range = [opts.min !== undefined ? `≥ ${opts.min}` : '', opts.max !== undefined ? `≤ ${opts.max}` : ''].filter(Boolean).join(' and ');
    throw new UserError(`${command}: --${name} must be ${opts.integer ? 'an integer' : 'a number'}${range ? ' ' + range : ''} (got "${v}").`, 2);
  }
  return n;
}
export function boolFlag(p: ParsedArgs, name: string): boolean {
  return p.flags[name] === true;
}
