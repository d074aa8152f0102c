import type { Command } from '../command.js';
import { UserError } from '../../core/errors.js';
import { numberFlag, parseArgs, requireString, stringFlag, type ParsedArgs } from '../args.js';
import { ScannerBridge, type BridgeOptions } from '../../bridge/bridge.js';
import { MrdListener, parseListenAddress } from '../../bridge/mrdListener.js';
import { AfniListener } from '../../bridge/afniListener.js';
import { SenderFatalError } from '../../sender/sender.js';
import { readTokenFile } from '../../server/auth.js';
import { stderrLogger } from '../../server/log.js';
import type { ScannerFormat } from '../../scanner/index.js';

const help = `mindsemantix bridge (--watch DIR | --xtc DIR | --mrd-listen [HOST:]PORT | --afni-listen [HOST:]PORT) --server ws://HOST:PORT [--format auto|dicom|nifti|parrec]
                    [--series N[,N...]] [--give-up SECONDS] [--token-file F] [--events F]
                    [--subject ID] [--session ID] [--task NAME] [--tr SECONDS]

Scanner bridge: watches a real-time export folder (file-system events plus polling every 50 ms, for network shares),
proves each new file complete by parsing it, and streams every volume to serve over protocol v1, keeping it until
acknowledged (reconnects and resends after any disconnect). Reads NIfTI-1/2 (one volume per file or a growing 4-D
file), DICOM (Siemens mosaic, XA enhanced, per-slice) and Philips PAR/REC. Volume order: the trailing number of the
file name (001_000007_000042.dcm, Dump-0007.par), else acquisition time. Runs: one per series (DICOM SeriesNumber,
PAR acquisition number, XTC folder), per growing 4-D file, else the folder. Several series in one folder are read
series by series; series that say they are not EPI (a localizer) are skipped unless chosen with --series.

  --watch DIR        folder the scanner exports into
  --xtc DIR          Philips XTC export: DIR holds numbered series folders of PAR/REC pairs (one per dynamic)
  --mrd-listen [HOST:]PORT
                     receive an ISMRMRD/MRD image stream (Siemens FIRE) on this TCP port (host 127.0.0.1 unless
                     given; FIRE's usual port is 9002): 2-D images are gathered per repetition into volumes, 3-D
                     images are volumes; a run is one MRD measurement, and a sender that reconnects continues it
  --afni-listen [HOST:]PORT
                     stand in for AFNI's real-time plugin (control channel on PORT, AFNI's is 7954; the data
                     channel on the TCP port the sender names) for Dimon -rt / rtfeedme; each dataset is a run.
                     Written from AFNI's README.realtime, not yet run against AFNI's own senders
  --server URL       ws://HOST:PORT of mindsemantix serve
  --format F         auto (default), dicom, nifti or parrec
  --series N[,N...]  stream only these series (every EPI series by default, each as its own run)
  --give-up SECONDS  stop waiting for a file that stays incomplete this long, with a warning (default 10)
  --token-file F     file holding the server's shared secret
  --events F         BIDS events TSV the presentation software appends to (default: *events*.tsv in DIR)
  --subject, --session, --task   BIDS labels for the runs (default 01, 01, vision)
  --tr SECONDS       repetition time when the files do not carry one
Stop with Ctrl-C: open runs are ended and the bridge exits once everything is acknowledged.`;

/** The network listener chosen by --mrd-listen or --afni-listen, if any. */
function listenerSource(
  p: ParsedArgs,
  tr: number | undefined,
  log: ReturnType<typeof stderrLogger>,
  onListenError: (m: string) => void,
): BridgeOptions['source'] {
  for (const [name, example, Listener] of [
    ['mrd-listen', '9002', MrdListener],
    ['afni-listen', '7954', AfniListener],
  ] as const) {
    const flag = stringFlag(p, name);
    if (flag === undefined) continue;
    const at = parseListenAddress(flag);
    if (!at)
      throw new UserError(
        `bridge: --${name} takes [HOST:]PORT, such as ${example} or 127.0.0.1:${example} (got "${flag}").`,
        2,
      );
    return (h) => new Listener({ ...h, ...at, tr, log, onListenError });
  }
  return undefined;
}

export const command: Command = {
  name: 'bridge',
  summary: 'scanner bridge: watch an export folder and stream each complete volume to serve',
  help,
  async run(argv) {
    const p = parseArgs('bridge', argv, {
      watch: { type: 'string' },
      xtc: { type: 'string' },
      'mrd-listen': { type: 'string' },
      'afni-listen': { type: 'string' },
      server: { type: 'string' },
      format: { type: 'string', default: 'auto', choices: ['auto', 'dicom', 'nifti', 'parrec'] },
      series: { type: 'string' },
      'give-up': { type: 'string' },
      'token-file': { type: 'string' },
      events: { type: 'string' },
      subject: { type: 'string' },
      session: { type: 'string' },
      task: { type: 'string' },
      tr: { type: 'string' },
    });
    if (p.positionals.length)
      throw new UserError(`bridge: unexpected argument "${p.positionals[0]}"; run \`mindsemantix bridge --help\`.`, 2);
    const inputs = ['watch', 'xtc', 'mrd-listen', 'afni-listen'].filter((k) => stringFlag(p, k) !== undefined);
    if (inputs.length !== 1)
      throw new UserError(
        `bridge: give exactly one of --watch DIR, --xtc DIR, --mrd-listen [HOST:]PORT or --afni-listen [HOST:]PORT (got ${inputs.length ? inputs.map((k) => `--${k}`).join(' and ') : 'neither'}); run \`mindsemantix bridge --help\`.`,
        2,
      );
    const url = requireString('bridge', p, 'server');
    const seriesFlag = stringFlag(p, 'series');
    const series = seriesFlag?.split(',').map((x) => Number(x.trim()));
    if (series && series.some((n) => !Number.isInteger(n) || n < 0))
      throw new UserError(
        `bridge: --series takes series numbers separated by commas, such as 5 or 5,7 (got "${seriesFlag}").`,
        2,
      );
    const giveUp = numberFlag('bridge', p, 'give-up', { min: 0.1 });
    if (!/^wss?:\/\//.test(url))
      throw new UserError(`bridge: --server must be a ws:// URL such as ws://127.0.0.1:8080 (got "${url}").`, 2);
    for (const k of ['subject', 'session', 'task']) {
      const v = stringFlag(p, k);
      if (v !== undefined && !/^[A-Za-z0-9]+$/.test(v))
        throw new UserError(`bridge: --${k} may contain only letters and digits (got "${v}").`, 2);
    }
    const tf = stringFlag(p, 'token-file');
    let token: string | undefined;
    try {
      token = tf ? readTokenFile(tf) : undefined;
    } catch (e) {
      throw new UserError(`bridge: ${(e as Error).message}`);
    }
    const log = stderrLogger();
    const tr = numberFlag('bridge', p, 'tr', { min: 0.001 });
    let listenError: (m: string) => void = () => undefined;
    const cannotListen = new Promise<never>((_, reject) => {
      listenError = (m) => reject(new UserError(`bridge: ${m}`));
    });
    const source = listenerSource(p, tr, log, (m) => listenError(m));
    const dir = stringFlag(p, 'watch') ?? stringFlag(p, 'xtc');
    const bridge = new ScannerBridge({
      dir,
      source,
      layout: stringFlag(p, 'xtc') ? 'series-folders' : 'folder',
      series,
      giveUpMs: giveUp !== undefined ? giveUp * 1000 : undefined,
      url,
      token,
      format: stringFlag(p, 'format') as ScannerFormat,
      eventsFile: stringFlag(p, 'events'),
      subject: stringFlag(p, 'subject'),
      session: stringFlag(p, 'session'),
      task: stringFlag(p, 'task'),
      tr,
      log,
    });
    const fatal = Promise.race([cannotListen, new Promise<never>((_, reject) => bridge.sender.once('fatal', reject))]);
    bridge.start();
    log(
      'info',
      `${dir ? `watching ${dir}` : `listening with --${inputs[0]} ${stringFlag(p, inputs[0])}`}, sending to ${url}`,
    );
    try {
      await Promise.race([
        fatal,
        new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        }),
      ]);
      log('info', 'stopping: ending open runs and waiting for the last acknowledgements');
      await Promise.race([fatal, bridge.stop()]);
    } catch (e) {
      await bridge.abort();
      if (e instanceof SenderFatalError) throw new UserError(`bridge: the server refused the connection: ${e.message}`);
      throw e;
    }
    process.stderr.write(
      `mindsemantix bridge: ${bridge.stats.volumes} volume(s) and ${bridge.stats.events} event(s) sent and acknowledged\n`,
    );
    return 0;
  },
};
