// Validates client messages once, at entry; every failure is a ProtocolError with a code and one sentence.
import {
  PROTOCOL_VERSION,
  type HelloMessage,
  type ReceivedEvent,
  type ReceivedMessage,
  type RunEndMessage,
  type RunStartMessage,
  type ServerMessage,
  type VolumeFrameHeader,
} from './messages.js';
import { ProtocolError } from './errors.js';
import { decodeInlineImage } from './inlineImage.js';
import { schemaCheck, shortJson, type SchemaCheck } from '../core/schemas/validator.js';

export { ProtocolError };

type Obj = Record<string, unknown>;

// Field rules are src/core/schemas/protocol-v1.schema.json, one sub-schema per message (`#/$defs/<type>`).
const checks = new Map<string, SchemaCheck>();

/** Checks `o` against the schema's `$defs/<def>`; throws one bad-message sentence naming the first bad field. */
function check(o: Obj, def: string, what: string): void {
  let c = checks.get(def);
  if (!c) checks.set(def, (c = schemaCheck('protocol-v1', `#/$defs/${def}`)));
  const p = c(o);
  if (!p) return;
  const got = p.kind === 'missing' ? 'it is missing' : `got ${shortJson(p.value)}`;
  throw new ProtocolError('bad-message', `${what}: "${p.field}" must be ${p.expected} (${got}).`);
}

export function parseJson(text: string, what: string): Obj {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    throw new ProtocolError('bad-message', `${what} is not valid JSON.`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o))
    throw new ProtocolError('bad-message', `${what} must be a JSON object.`);
  return o as Obj;
}

export function checkVersion(o: Obj, what: string): void {
  if (o.v !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      'unsupported-version',
      `${what} speaks protocol version ${JSON.stringify(o.v)}, this server speaks version ${PROTOCOL_VERSION}; update the sender.`,
      true,
    );
  }
}

/** Parses and validates one text frame from a client. */
export function parseClientMessage(text: string): ReceivedMessage {
  const o = parseJson(text, 'message');
  const type = o.type;
  switch (type) {
    case 'hello': {
      checkVersion(o, 'hello');
      check(o, type, type);
      // A token of another type is kept as '' so that it fails authentication like a wrong one.
      const token = o.token === undefined ? undefined : typeof o.token === 'string' ? o.token : '';
      const m: HelloMessage = { type, v: PROTOCOL_VERSION, client: o.client as string, token };
      return m;
    }
    case 'run-start': {
      check(o, type, type);
      const m: RunStartMessage = {
        type,
        session: o.session as string,
        run: o.run as string,
        subject: o.subject as string,
        task: o.task as string,
        tr: o.tr as number,
        dims: o.dims as [number, number, number],
        voxelSize: o.voxelSize as [number, number, number],
        affine: o.affine as number[],
      };
      return m;
    }
    case 'event': {
      check(o, type, type);
      const m: ReceivedEvent = {
        type,
        session: o.session as string,
        run: o.run as string,
        trial: o.trial as number,
        onset: o.onset as number,
        duration: o.duration as number,
        stimulusId: o.stimulusId as string,
        trialType: o.trialType as string | undefined,
        references: o.references as string[] | undefined,
        image: o.image as string | undefined,
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
      check(o, type, type);
      const m: RunEndMessage = {
        type,
        session: o.session as string,
        run: o.run as string,
        volumes: o.volumes as number,
        events: o.events as number,
      };
      return m;
    }
    default:
      throw new ProtocolError(
        'unknown-type',
        `unknown message type ${JSON.stringify(type)}; expected hello, run-start, event or run-end.`,
      );
  }
}

export function parseVolumeHeader(o: Obj): VolumeFrameHeader {
  checkVersion(o, 'volume frame');
  check(o, 'volume-header', 'volume frame header');
  return {
    v: PROTOCOL_VERSION,
    session: o.session as string,
    run: o.run as string,
    index: o.index as number,
    seq: o.seq as number,
    tr: o.tr as number,
    acquisitionTime: o.acquisitionTime as number,
    seenAt: o.seenAt as number | undefined,
    readAt: o.readAt as number | undefined,
    sentAt: o.sentAt as number,
  };
}

/** Parses a server message on the client side (lenient: unknown types are returned as-is for logging). */
export function parseServerMessage(text: string): ServerMessage | { type: string } {
  const o = parseJson(text, 'server message');
  if (typeof o.type !== 'string') throw new ProtocolError('bad-message', 'server message has no "type".');
  return o as unknown as ServerMessage;
}
