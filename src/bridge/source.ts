// What feeds the bridge: a watched folder, numbered series folders (XTC), or a network listener (MRD, AFNI).
import type { WatchedVolume } from './watch.js';

export interface SourceHandlers {
  onVolume(v: WatchedVolume): void;
  /** A file (or message) that will never decode: reported once. */
  onInvalid?(path: string, reason: string): void;
  /** A file that stayed incomplete past the give-up time. */
  onGiveUp?(path: string, reason: string): void;
  /** Every name seen in a watched folder, for others (the events TSV follower). */
  onFile?(path: string): void;
  /** The source knows a run is over (an AFNI dataset ended): the bridge ends it now rather than at the next run. */
  onRunEnd?(runKey: string): void;
}

export interface VolumeSource {
  start(): void;
  stop(): void | Promise<void>;
}
