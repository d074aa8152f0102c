// Every refusal of client input is a ProtocolError: the wire error code and one sentence for the sender.
import type { ErrorCode } from './messages.js';

export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly fatal = false,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}
