import type { Command } from './command.js';
import { UserError } from '../core/errors.js';

// Commands load lazily so `mindsemantix eval` does not pay for onnxruntime or the server.
const commands: Record<string, () => Promise<{ command: Command }>> = {
  serve: () => import('./commands/serve.js'),
  bridge: () => import('./commands/bridge.js'),
  replay: () => import('./commands/replay.js'),
  demo: () => import('./commands/demo.js'),
  simulate: () => import('./commands/simulate.js'),
  convert: () => import('./commands/convert.js'),
  eval: () => import('./commands/eval.js'),
  responses: () => import('./commands/responses.js'),
  calibrate: () => import('./commands/calibrate.js'),
};

async function usage(): Promise<string> {
  const lines = ['Usage: mindsemantix <command> [options]   (every command has --help)', '', 'Commands:'];
  for (const [name, load] of Object.entries(commands)) {
    const { command } = await load();
    lines.push(`  ${name.padEnd(10)} ${command.summary}`);
  }
  return lines.join('\n');
}

export async function runCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  try {
    if (!name || name === '--help' || name === '-h' || name === 'help') {
      console.log(await usage());
      return name ? 0 : 2;
    }
    const load = commands[name];
    if (!load) throw new UserError(`unknown command "${name}"; run \`mindsemantix --help\` for the list.`, 2);
    const { command } = await load();
    if (rest.includes('--help') || rest.includes('-h')) {
      console.log(command.help);
      return 0;
    }
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UserError) {
      console.error(`mindsemantix: ${err.message}`);
      return err.exitCode;
    }
    const e = err as Error;
    console.error(
      `mindsemantix: internal error: ${e?.message ?? String(err)} (please report this with the command you ran)`,
    );
    if (process.env.MINDSEMANTIX_DEBUG) console.error(e?.stack);
    return 1;
  }
}
