// Validates client messages once, at entry; every failure is a ProtocolError with a code and one sentence.
import {
  PROTOCOL_VERSION,
  type HelloMessage, type ReceivedEvent, type ReceivedMessage, type RunEndMessage, type RunStartMessage,
  type ServerMessage, type VolumeFrameHeader,
} from './messages.js';
import { ProtocolError } from './errors.js';
import { decodeInlineImage } from './inlineImage.js';

export { ProtocolError };

type Obj = Record<string, unknown>;

function str(o: Obj, k: string, what: string, opt = false): string | undefined {
  const v = o[k];
  if (v === undefined && opt) return undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 256) {
    throw new ProtocolError('bad-message', `${what}: "${k}" must be a non-empty string of at most 256 characters.`);
  }
  return v;
}
function num(o: Obj, k: string, what: string, { min = -Infinity, int = false, opt = false } = {}): number | undefined {
  const v = o[k];
  if (v === undefined && opt) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (int && !Number.isInteger(v))) {
    throw new ProtocolError('bad-message', `${what}: "${k}" must be a finite ${int ? 'integer' : 'number'}${min > -Infinity ? ` ≥ ${min}` : ''}.`);
  }
  return v;
}
function numArray(o: Obj, k: string, what: string, len: number, { int = false, positive = false } = {}): number[] {
  const v = o[k];
  if (!Array.isArray(v) || v.length !== len || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && (!int || Number.isInteger(x)) && (!positive || x > 0))) {
    throw new ProtocolError('bad-message', `${what}: "${k}" must be an array of ${len} finite${positive ? ' positive' : ''} ${int ? 'integers' : 'numbers'}.`);
  }
  return v as number[];
}
/** Session, run and subject labels end up in file names: BIDS-safe characters only. */
function label(o: Obj, k: string, what: string): string {
  const v = str(o, k, what)!;
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(v)) {
    throw new ProtocolError('bad-message', `${what}: "${k}" may contain only letters, digits, "_" and "-" (got ${JSON.stringify(v.slice(0, 40))}).`);
  }
  return v;
}

export function parseJson(text: string, what: string): Obj {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new ProtocolError('bad-message', `${what} is not valid JSON.`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ProtocolError('bad-message', `${what} must be a JSON object.`);
  return o as Obj;
}

export function checkVersion(o: Obj, what: string): void {
  if (o.v !== PROTOCOL_VERSION) {
    throw new ProtocolError('unsupported-version',
      `${what} speaks protocol version ${JSON.stringify(o.v)}, this server speaks version ${PROTOCOL_VERSION}; update the sender.`, true);
  }
}

/** Parses and validates one text frame from a client. */
export function parseClientMessage(text: string): ReceivedMessage {
  const o = parseJson(text, 'message');
  const type = o.type;
  switch (type) {
    case 'hello': {
      checkVersion(o, 'hello');
      const token = o.token === undefined ? undefined : (typeof o.token === 'string' ? o.token : '');
      const m: HelloMessage = { type, v: PROTOCOL_VERSION, client: str(o, 'client', 'hello')!, token };
      return m;
    }
    case 'run-start': {
      const w = 'run-start';
      const m: RunStartMessage = {
        type, session: label(o, 'session', w), run: label(o, 'run', w), subject: label(o, 'subject', w), task: label(o, 'task', w),
        tr: num(o, 'tr', w, { min: 1e-3 })!,
        dims: numArray(o, 'dims', w, 3, { int: true, positive: true }) as [number, number, number],
        voxelSize: numArray(o, 'voxelSize', w, 3, { positive: true }) as [number, number, number],
        affine: numArray(o, 'affine', w, 16),
      };
      return m;
    }
    case 'event': {
      const w = 'event';
      const refs = o.references;
      if (refs !== undefined && !(Array.isArray(refs) && refs.length <= 64 && refs.every((r) => typeof r === 'string' && r.length < 4096))) {
        throw new ProtocolError('bad-message', 'event: "references" must be an array of at most 64 strings.');
      }
      const m: ReceivedEvent = {
        type, session: label(o, 'session', w), run: label(o, 'run', w),
        trial: num(o, 'trial', w, { min: 0, int: true })!, onset: num(o, 'onset', w)!, duration: num(o, 'duration', w, { min: 0 })!,
        stimulusId: str(o, 'stimulusId', w)!, trialType: str(o, 'trialType', w, true),
        references: refs as string[] | undefined, image: str(o, 'image', w, true),
      };
      // A bad image must not cost the event (its timing matters more): refuse the image alone, say why.
      if (o.imageData !== undefined) {
        try {
          m.imageData = decodeInlineImage(o.imageData);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
          m.imageRefused = e.message;
        }
      }
      return m;
    }
    case 'run-end': {
      const w = 'run-end';
      const m: RunEndMessage = {
        type, session: label(o, 'session', w), run: label(o, 'run', w),
        volumes: num(o, 'volumes', w, { min: 0, int: true })!, events: num(o, 'events', w, { min: 0, int: true })!,
      };
      return m;
    }
    default:
      throw new ProtocolError('unknown-type', `unknown message type ${JSON.stringify(type)}; expected hello, run-start, event or run-end.`);
  }
}

export function parseVolumeHeader(o: Obj): VolumeFrameHeader {
  checkVersion(o, 'volume frame');
  const w = 'volume frame header';
  return {
    v: PROTOCOL_VERSION, session: label(o, 'session', w), run: label(o, 'run', w),
    index: num(o, 'index', w, { min: 0, int: true })!, seq: num(o, 'seq', w, { min: 0, int: true })!,
    tr: num(o, 'tr', w, { min: 1e-3 })!, acquisitionTime: num(o, 'acquisitionTime', w)!,
    seenAt: num(o, 'seenAt', w, { opt: true }), readAt: num(o, 'readAt', w, { opt: true }), sentAt: num(o, 'sentAt', w)!,
  };
}

/** Parses a server message on the client side (lenient: unknown types are returned as-is for logging). */
export function parseServerMessage(text: string): ServerMessage | { type: string } {
  const o = parseJson(text, 'server message');
  if (typeof o.type !== 'string') throw new ProtocolError('bad-message', 'server message has no "type".');
  return o as unknown as ServerMessage;
}
