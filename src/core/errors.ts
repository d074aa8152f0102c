/** A failure the user can fix: printed as one line on stderr, exit code 2 (usage) or 1 (runtime). */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}
