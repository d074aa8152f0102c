import type { Command } from '../command.js';
import { UserError } from '../errors.js';

// Placeholder until the owning issue lands; it says so rather than pretending to work.
export const command: Command = {
  name: 'simulate',
  summary: '(not available yet)',
  help: 'mindsemantix simulate: not available in this build yet.',
  async run() {
    throw new UserError('simulate is not available in this build yet.');
  },
};
