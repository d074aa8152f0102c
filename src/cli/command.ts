/** Every CLI command module exports one of these as `command`. */
export interface Command {
  name: string;
  /** One line for `mindsemantix --help`. */
  summary: string;
  /** Full `--help` text. */
  help: string;
  /** Returns the process exit code. Throws UserError for failures the user can fix. */
  run(argv: string[]): Promise<number>;
}
