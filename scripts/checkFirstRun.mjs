#!/usr/bin/env node
// CI's newcomer check, run in a fresh clone: `npm start -- --once --json` on the first run (everything installs) must
// print only JSON lines on stdout, end with the summary, decode every trial, and show no npm or Node warning on stderr.
import { spawn } from 'node:child_process';

const child = spawn('npm', ['start', '--', '--once', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
let out = '',
  err = '';
child.stdout.on('data', (d) => {
  out += d;
});
child.stderr.on('data', (d) => {
  err += d;
  process.stderr.write(d);
});
const code = await new Promise((resolve) => child.on('close', resolve));
const problems = [];
if (code !== 0) problems.push(`npm start exited ${code}`);
const lines = out.split('\n').filter((l) => l.length > 0);
const parsed = [];
for (const [i, l] of lines.entries()) {
  try {
    parsed.push(JSON.parse(l));
  } catch {
    problems.push(`stdout line ${i + 1} is not JSON: ${l.slice(0, 120)}`);
  }
}
const last = parsed.at(-1);
if (!last || last.type !== 'summary') problems.push('the last stdout line is not the summary');
else if (last.decoded !== last.trials) problems.push(`only ${last.decoded} of ${last.trials} trials were decoded`);
const warnings = err
  .split('\n')
  .filter((l) => /^npm warn|^npm WARN|\(node:\d+\) \[?\w*Warning|MaxListenersExceeded/.test(l));
for (const w of warnings) problems.push(`stderr warning: ${w}`);
if (problems.length) {
  console.error(`\nfirst-run check FAILED:\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
console.error(
  `\nfirst-run check ok: ${parsed.length} JSON lines on stdout, summary last (${last.decoded}/${last.trials} decoded), no npm or Node warnings`,
);
