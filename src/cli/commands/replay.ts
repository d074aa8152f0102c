import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { parseArgs, requireString, stringFlag } from '../args.js';
import { replaySession } from '../../replay/index.js';
import { readTokenFile } from '../../server/auth.js';
import { SenderFatalError } from '../../sender/sender.js';
import { stderrLogger } from '../../server/log.js';

const help = `mindsemantix replay SESSION --server ws://HOST:PORT [--speed N|max] [--run NAME] [--token-file F]

Streams the BIDS runs under SESSION (4-D NIfTI, events TSV, JSON sidecar) to a serve instance over protocol v1,
at the recorded timing divided by N (default 1), or as fast as the server acknowledges with --speed max.

  --server URL     ws://HOST:PORT of mindsemantix serve
  --speed N|max    real-time divisor (default 1)
  --run NAME       only the runs whose name contains NAME (e.g. run-02)
  --token-file F   file holding the server's shared secret`;

export const command: Command = {
  name: 'replay',
  summary: 'stream a recorded BIDS session to serve at N× real time',
  help,
  async run(argv) {
    const p = parseArgs('replay', argv, {
      server: { type: 'string' },
      speed: { type: 'string', default: '1' },
      run: { type: 'string' },
      'token-file': { type: 'string' },
    });
    if (p.positionals.length !== 1)
      throw new UserError('replay: give exactly one SESSION folder; run `mindsemantix replay --help`.', 2);
    const url = requireString('replay', p, 'server');
    const s = stringFlag(p, 'speed')!;
    const speed = s === 'max' ? 'max' : Number(s);
    if (speed !== 'max' && !(Number.isFinite(speed) && speed > 0))
      throw new UserError(`replay: --speed must be a positive number or "max" (got "${s}").`, 2);
    const tf = stringFlag(p, 'token-file');
    let token: string | undefined;
    try {
      token = tf ? readTokenFile(tf) : undefined;
    } catch (e) {
      throw new UserError(`replay: ${(e as Error).message}`);
    }
    const ac = new AbortController();
    process.once('SIGINT', () => ac.abort());
    try {
      const r = await replaySession({
        session: p.positionals[0],
        url,
        token,
        speed,
        run: stringFlag(p, 'run'),
        log: stderrLogger(),
        signal: ac.signal,
      });
      process.stderr.write(
        `mindsemantix replay: ${r.volumes} volume(s) and ${r.events} event(s) of ${r.runs.join(', ')} acknowledged in ${r.seconds.toFixed(1)} s (${r.volumesPerSecond.toFixed(1)} volumes/s)\n`,
      );
      return 0;
    } catch (e) {
      if (e instanceof SenderFatalError) throw new UserError(`replay: the server refused the connection: ${e.message}`);
      if (e instanceof UserError) throw e;
      throw new UserError(`replay: ${(e as Error).message}`);
    }
  },
};
