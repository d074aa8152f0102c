import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs, numberFlag, requireString, type FlagSpecs } from '../../src/cli/args.js';
import { UserError } from '../../src/core/errors.js';

const specs: FlagSpecs = {
  out: { type: 'string' },
  speed: { type: 'string', default: '1' },
  json: { type: 'boolean' },
  session: { type: 'string', multiple: true },
  precision: { type: 'string', choices: ['auto', 'fp32'] },
};

/** The one-line usage error a bad argv gets (exit code 2), or a failure when it parses. */
function usageError(argv: string[]): string {
  try {
    parseArgs('demo', argv, specs);
  } catch (e) {
    assert.ok(e instanceof UserError);
    assert.equal(e.exitCode, 2);
    assert.equal(e.message.split('\n').length, 1);
    return e.message;
  }
  assert.fail(`${argv.join(' ')} parsed`);
}

test('flags: defaults, --name value, --name=value, booleans, repeats, positionals and --', () => {
  assert.deepEqual(parseArgs('demo', [], specs), { flags: { speed: '1' }, positionals: [] });
  const p = parseArgs(
    'demo',
    ['a', '--out', 'x', '--speed=4', '--json', '--session', 's1', '-', '--session=s2', '--', '--json', 'b'],
    specs,
  );
  assert.deepEqual(p.flags, { out: 'x', speed: '4', json: true, session: ['s1', 's2'] });
  assert.deepEqual(p.positionals, ['a', '-', '--json', 'b']);
  // a value may start with a dash (a negative number, a file named -x): the flag takes the next argument whatever it is
  assert.equal(parseArgs('demo', ['--speed', '-2'], specs).flags.speed, '-2');
  assert.equal(parseArgs('demo', ['--out', '--json'], specs).flags.out, '--json');
  assert.equal(parseArgs('demo', ['--out='], specs).flags.out, '');
});

test('usage errors are one sentence naming the flag and what to do', () => {
  assert.equal(usageError(['--frob']), 'demo: unknown option --frob; run `mindsemantix demo --help` for the options.');
  assert.equal(
    usageError(['--frob=1']),
    'demo: unknown option --frob; run `mindsemantix demo --help` for the options.',
  );
  assert.equal(usageError(['--json=yes']), 'demo: --json takes no value.');
  assert.equal(usageError(['--out']), 'demo: --out needs a value.');
  assert.equal(usageError(['--json', '--session']), 'demo: --session needs a value.');
  assert.equal(usageError(['--precision', 'fp8']), 'demo: --precision must be one of auto, fp32 (got "fp8").');
  assert.equal(
    usageError(['--constructor']),
    'demo: unknown option --constructor; run `mindsemantix demo --help` for the options.',
  );
  assert.equal(usageError(['-x']), 'demo: unknown option -x; run `mindsemantix demo --help` for the options.');
  // a script that is not a mindsemantix command names its options itself
  assert.throws(() => parseArgs('soak', ['--frob'], specs, 'the options are --out and --json'), {
    message: 'soak: unknown option --frob; the options are --out and --json.',
  });
  // the first problem in argv order is the one reported
  assert.match(usageError(['--out', 'x', '--frob', '--json=1']), /unknown option --frob/);
});

test('value helpers: required strings and numbers in range', () => {
  const p = parseArgs('demo', ['--speed', '2.5', '--out', ''], specs);
  assert.equal(numberFlag('demo', p, 'speed', { min: 0 }), 2.5);
  assert.equal(numberFlag('demo', p, 'missing'), undefined);
  assert.throws(
    () => numberFlag('demo', p, 'speed', { integer: true, min: 1 }),
    /demo: --speed must be an integer ≥ 1 \(got "2.5"\)/,
  );
  assert.throws(() => requireString('demo', p, 'out'), /demo: --out is required; run `mindsemantix demo --help`/);
});
