// The cross-language contracts (bundle manifest, preprocessing config, protocol v1 messages) are JSON Schema files in
// this folder, kept once and read by both sides: here with ajv, in Python by models/mindsemantix/schemas.py with
// jsonschema. This module compiles them and turns the first violation into a `SchemaProblem` (which field, what it
// must be) that each caller words as its own one-sentence error.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { UserError } from '../errors.js';

/** Base of every schema's `$id` (`.invalid`: never fetched; references between the files resolve against it). */
export const SCHEMA_BASE = 'https://mindsemantix.invalid/schemas/';

/** The first violation of a document, in words: the field's dotted path and the schema's description of it. */
export interface SchemaProblem {
  /** 'missing': a required field is absent; 'unknown': a field the schema does not allow; 'invalid': a bad value. */
  kind: 'missing' | 'unknown' | 'invalid';
  /** Dotted path, arrays as `[i]` (e.g. `subjects.sim01.voxels`); '' for the document itself. */
  field: string;
  /** The noun phrase a valid value is (the schema's `description`, e.g. "an integer ≥ 1"). */
  expected: string;
  /** The offending value (undefined when missing). */
  value: unknown;
  /** For 'unknown': the fields allowed beside it. */
  known?: string[];
}

export type SchemaCheck = (doc: unknown) => SchemaProblem | undefined;

type Node = Record<string, unknown>;

// Compiled code runs from dist/src/core/schemas/, which tsc does not copy the .json files to: the source tree's folder
// is 4 levels above it. A copy beside the module (a packaged layout) wins.
function schemaDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const dirs = [here, join(here, '..', '..', '..', '..', 'src', 'core', 'schemas')];
  const dir = dirs.find((d) => existsSync(join(d, 'bundle-manifest.schema.json')));
  if (!dir)
    throw new UserError(
      `the JSON schema files are missing (looked in ${dirs.join(' and ')}); reinstall mindsemantix or run it from a full checkout.`,
    );
  return dir;
}

const docs = new Map<string, Node>();

/** Loads `<name>.schema.json` and, transitively, the files its `$ref`s name; returns the parsed schema. */
function load(name: string): Node {
  const id = `${SCHEMA_BASE}${name}.schema.json`;
  const have = docs.get(id);
  if (have) return have;
  const doc = JSON.parse(readFileSync(join(schemaDir(), `${name}.schema.json`), 'utf8')) as Node;
  docs.set(id, doc);
  const refs: string[] = [];
  const scan = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(scan);
    else if (typeof v === 'object' && v !== null) {
      for (const [k, x] of Object.entries(v))
        if (k === '$ref' && typeof x === 'string' && !x.startsWith('#')) refs.push(x);
        else scan(x);
    }
  };
  scan(doc);
  for (const ref of refs)
    load(
      new URL(ref, id).href
        .slice(SCHEMA_BASE.length)
        .split('#')[0]
        .replace(/\.schema\.json$/, ''),
    );
  return doc;
}

// Two instances: one fills in `default`s (the preprocessing config is completed from its schema), one never alters.
const instances = new Map<boolean, Ajv2020>();
function ajv(useDefaults: boolean): Ajv2020 {
  let a = instances.get(useDefaults);
  if (!a) {
    a = new Ajv2020({ useDefaults, allErrors: false, strict: true });
    instances.set(useDefaults, a);
  }
  for (const [id, doc] of docs) if (!a.getSchema(id)) a.addSchema(doc, id);
  return a;
}

/**
 * A check against schema file `<name>.schema.json` (optionally its sub-schema at `pointer`, e.g. `#/$defs/event`).
 * With `useDefaults` a valid document is completed in place with the schema's defaults.
 */
export function schemaCheck(name: string, pointer = '', { useDefaults = false } = {}): SchemaCheck {
  load(name);
  const id = `${SCHEMA_BASE}${name}.schema.json`;
  const validate = ajv(useDefaults).getSchema(`${id}${pointer}`) as ValidateFunction | undefined;
  if (!validate) throw new Error(`no schema at ${id}${pointer}`);
  const start: Frame = { node: resolvePointer(docs.get(id)!, pointer || '#'), base: id };
  return (doc) => (validate(doc) ? undefined : describe(start, doc, validate.errors ?? []));
}

interface Frame {
  node: Node;
  base: string;
}

function resolvePointer(doc: Node, pointer: string): Node {
  let n: unknown = doc;
  for (const seg of pointer.replace(/^#\/?/, '').split('/').filter(Boolean)) {
    n = (n as Node)[seg.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return n as Node;
}

/** The node itself, then what its `$ref` points to (and so on): where its keywords and description may be. */
function chain(f: Frame): Frame[] {
  const out = [f];
  for (let cur = f; typeof cur.node.$ref === 'string'; ) {
    const url = new URL(cur.node.$ref, cur.base);
    const base = url.href.split('#')[0];
    const doc = docs.get(base);
    if (!doc) break;
    cur = { node: resolvePointer(doc, url.hash || '#'), base };
    out.push(cur);
  }
  return out;
}

function child(f: Frame, seg: string): Frame | undefined {
  for (const c of chain(f)) {
    const { node } = c;
    const props = node.properties as Record<string, Node> | undefined;
    if (props && typeof props[seg] === 'object') return { node: props[seg], base: c.base };
    const prefix = node.prefixItems as Node[] | undefined;
    if (
      /^\d+$/.test(seg) &&
      Array.isArray(prefix) &&
      Number(seg) < prefix.length &&
      typeof prefix[Number(seg)] === 'object'
    ) {
      return { node: prefix[Number(seg)], base: c.base };
    }
    if (/^\d+$/.test(seg) && typeof node.items === 'object') return { node: node.items as Node, base: c.base };
    if (typeof node.additionalProperties === 'object') return { node: node.additionalProperties as Node, base: c.base };
  }
  return undefined;
}

function description(f: Frame): string | undefined {
  for (const c of chain(f)) if (typeof c.node.description === 'string') return c.node.description;
  return undefined;
}

function knownFields(f: Frame): string[] {
  return chain(f).flatMap((c) => Object.keys((c.node.properties as Node | undefined) ?? {}));
}

const fieldPath = (segs: string[]): string =>
  segs.reduce((p, s) => (/^\d+$/.test(s) ? `${p}[${s}]` : p ? `${p}.${s}` : s), '');

/**
 * The problem ajv's last error names. With allErrors off ajv stops at the first failing keyword; under anyOf it also
 * keeps the branches' errors, and the combinator's own error (the last) is the one about the field as a whole.
 * The field reported is the deepest one along the path that the schema describes (an item of `dims` is reported as
 * `dims`, whose description says what the whole array must be).
 */
function describe(start: Frame, doc: unknown, errors: ErrorObject[]): SchemaProblem {
  const e = errors[errors.length - 1];
  const segs = e
    ? e.instancePath
        .split('/')
        .slice(1)
        .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    : [];
  const frames: Frame[] = [start];
  for (const s of segs) {
    const next = child(frames[frames.length - 1], s);
    if (!next) break;
    frames.push(next);
  }
  const valueAt = (n: number): unknown => segs.slice(0, n).reduce<unknown>((v, s) => (v as Node | undefined)?.[s], doc);
  const parent = frames.length - 1;
  if (e?.keyword === 'required' && frames.length === segs.length + 1) {
    const key = (e.params as { missingProperty: string }).missingProperty;
    const f = child(frames[parent], key);
    return {
      kind: 'missing',
      field: fieldPath([...segs, key]),
      expected: (f && description(f)) ?? 'present',
      value: undefined,
    };
  }
  if (e?.keyword === 'additionalProperties' && frames.length === segs.length + 1) {
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    return {
      kind: 'unknown',
      field: fieldPath([...segs, key]),
      expected: 'absent',
      value: (valueAt(segs.length) as Node)[key],
      known: knownFields(frames[parent]),
    };
  }
  for (let i = frames.length - 1; i >= 1; i--) {
    const d = description(frames[i]);
    if (d) return { kind: 'invalid', field: fieldPath(segs.slice(0, i)), expected: d, value: valueAt(i) };
  }
  return { kind: 'invalid', field: '', expected: 'a JSON object', value: doc };
}

/** A value for a one-line message: JSON, cut to `max` characters. */
export function shortJson(v: unknown, max = 40): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
