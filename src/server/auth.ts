import { readFileSync } from 'node:fs';
import { createHash, timingSafeEqual } from 'node:crypto';

/** Reads a shared-secret token file: its contents, trimmed; an empty file is an error. */
export function readTokenFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(
      `cannot read token file ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); create it with the shared secret.`,
    );
  }
  const token = text.trim();
  if (!token) throw new Error(`token file ${path} is empty; write the shared secret into it.`);
  return token;
}

/** Constant-time comparison (hashing first makes lengths equal). */
export function tokenMatches(expected: string, given: string | undefined): boolean {
  if (given === undefined) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(given).digest();
  return timingSafeEqual(a, b);
}
