// Wire protocol v1: the JSON messages (text frames) and the volume frame header (binary frames).
// docs/protocol.md is the reference; this file is its executable form.
import type { StimulusImage } from '../core/types.js';

export const PROTOCOL_VERSION = 1;
/** WebSocket path on the `serve` port. */
export const BRIDGE_PATH = '/bridge';

// ---- client → server ----------------------------------------------------------------------------

export interface HelloMessage {
  type: 'hello';
  v: number;
  /** Shared secret (contents of `--token-file`, trimmed). Omitted when the server runs without a token. */
  token?: string;
  /** Who is sending: "bridge", "replay", ... (logged). */
  client: string;
}

export interface RunStartMessage {
  type: 'run-start';
  session: string;
  run: string;
  subject: string;
  task: string;
  tr: number;
  dims: [number, number, number];
  voxelSize: [number, number, number];
  /** 4×4 row-major voxel→RAS mm. */
  affine: number[];
}

export interface EventMessage {
  type: 'event';
  session: string;
  run: string;
  trial: number;
  onset: number;
  duration: number;
  stimulusId: string;
  trialType?: string;
  references?: string[];
  /** Stimulus path relative to the sender's session root (informative: the server cannot open it). */
  image?: string;
  /** The stimulus image file itself, base64 (PNG, JPEG or WebP; limits in inlineImage.ts). */
  imageData?: string;
}

/** An event as validated at entry: the inline image decoded and checked, or why it was refused (the event stays). */
export interface ReceivedEvent extends Omit<EventMessage, 'imageData'> {
  imageData?: StimulusImage;
  imageRefused?: string;
}

export interface RunEndMessage {
  type: 'run-end';
  session: string;
  run: string;
  /** Number of volumes the sender produced for this run (indices 0..volumes-1). */
  volumes: number;
  /** Number of events the sender produced for this run. */
  events: number;
}

export type ClientMessage = HelloMessage | RunStartMessage | EventMessage | RunEndMessage;
/** What the server handles after validation. */
export type ReceivedMessage = HelloMessage | RunStartMessage | ReceivedEvent | RunEndMessage;

// ---- server → client ----------------------------------------------------------------------------

export interface ProtocolLimits {
  maxFrameBytes: number;
  maxDim: number;
  maxVoxels: number;
  maxMessagesPerSecond: number;
  maxConnectionsPerIp: number;
  /** Volumes per run (indices 0..maxRunVolumes-1); a run-end or index beyond it is refused. */
  maxRunVolumes: number;
}

export interface WelcomeMessage {
  type: 'welcome';
  v: number;
  server: string;
  limits: ProtocolLimits;
}

/** Cumulative acknowledgement: every volume index < `next` and every event trial < `eventsNext` is settled
 *  (accepted, or declared missing and reported in a `gap`). The sender may forget them. */
export interface AckMessage {
  type: 'ack';
  session: string;
  run: string;
  next: number;
  eventsNext: number;
  /** True once the run-end has been processed. */
  ended: boolean;
}

/** Volume indices [from, to) of a run that will never be accepted (missing or rejected). */
export interface GapMessage {
  type: 'gap';
  session: string;
  run: string;
  from: number;
  to: number;
  reason: string;
}

export type ErrorCode =
  | 'bad-message'
  | 'unknown-type'
  | 'unsupported-version'
  | 'auth-required'
  | 'auth-failed'
  | 'not-authenticated'
  | 'frame-too-large'
  | 'bad-frame'
  | 'bad-volume'
  | 'dims-too-large'
  | 'dims-changed'
  | 'non-finite'
  | 'unknown-run'
  | 'run-conflict'
  | 'duplicate'
  | 'late-volume'
  | 'rate-limited'
  | 'too-many-connections'
  | 'hello-timeout'
  | 'server-error'
  | 'bad-image';

export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  message: string;
  /** When true the server closes the connection after this message. */
  fatal: boolean;
  session?: string;
  run?: string;
  index?: number;
}

export type ServerMessage = WelcomeMessage | AckMessage | GapMessage | ErrorMessage;

// ---- binary volume frame header -----------------------------------------------------------------

export interface VolumeFrameHeader {
  v: number;
  session: string;
  run: string;
  /** 0-based volume index within the run. */
  index: number;
  /** Sender's frame counter, increasing by one per frame sent (resends included); diagnostics only. */
  seq: number;
  tr: number;
  /** Seconds from run start at which the scanner acquired the volume. */
  acquisitionTime: number;
  /** Wall-clock ms (Date.now scale) when the sender first saw the volume (file appeared / replay clock). */
  seenAt?: number;
  /** Wall-clock ms when the volume was read and proven complete. */
  readAt?: number;
  /** Wall-clock ms when this frame was sent. */
  sentAt: number;
}
