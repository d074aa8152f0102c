// How the bootstrap runs an installer: its output goes to stderr (fd 2), never stdout, because `npm start -- --json`
// promises JSON lines only on stdout, on the first run too. A failure is one line saying what to do.
import { spawnSync } from 'node:child_process';

export function runInstaller(cmd, argv, { cwd, quiet = false, env = {}, hint } = {}) {
  const r = spawnSync(cmd, argv, {
    cwd,
    stdio: quiet ? ['ignore', 'ignore', 'inherit'] : ['ignore', 2, 'inherit'],
    env: { ...process.env, ...env },
  });
  if (r.status !== 0) {
    console.error(
      `[bootstrap] failed: ${cmd} ${argv.join(' ')} (exit ${r.status}). ${hint ?? 'Fix the error above and run the command again.'}`,
    );
    process.exit(1);
  }
}
