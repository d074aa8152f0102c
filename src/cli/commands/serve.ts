import type { Command } from '../command.js';
import { UserError } from '../errors.js';

// Placeholder until the owning issue lands; it says so rather than pretending to work.
export const command: Command = {
  name: 'serve',
  summary: '(not available yet)',
  help: 'mindsemantix serve: not available in this build yet.',
  async run() {
    throw new UserError('serve is not available in this build yet.');
  },
};
