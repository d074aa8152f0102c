import type { ProtocolLimits } from '../protocol/messages.js';

export interface ServerLimits extends ProtocolLimits {
  /** How long a connection may stay silent before sending hello. */
  helloTimeoutMs: number;
  /** Largest decompressed NIfTI accepted from a gzip payload (gzip-bomb guard). */
  maxInflatedBytes: number;
  /** Bytes a connection may send before its hello is accepted (a hello is well under 1 KiB). */
  maxPreHelloBytes: number;
  /** Events (trial numbers) per run. */
  maxRunEvents: number;
  /** Runs one connection may start (each holds state until the connection closes). */
  maxRunsPerConnection: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxFrameBytes: 64 * 1024 * 1024,
  maxDim: 1024,
  maxVoxels: 16 * 1024 * 1024,
  // A scanner produces at most a few volumes per second; replays at --speed max stay well below this.
  maxMessagesPerSecond: 2000,
  maxConnectionsPerIp: 16,
  helloTimeoutMs: 5000,
  maxInflatedBytes: 128 * 1024 * 1024,
  // The recording's NIfTI-1 header keeps the volume count in an int16 (dim[4]): 32767 volumes is 14.5 h at TR 1.6 s.
  maxRunVolumes: 32767,
  maxRunEvents: 100_000,
  maxPreHelloBytes: 4096,
  maxRunsPerConnection: 256,
};

/** Token bucket: `rate` messages per second with a burst of `rate`. */
export class RateLimiter {
  private tokens: number;
  private last = performance.now();
  constructor(private readonly rate: number) {
    this.tokens = rate;
  }
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.rate, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
