// Siemens CSA headers (private tags (0029,xx10) image / (0029,xx20) series): the "SV10" CSA2 layout and the older CSA1.
// Layout as documented by nibabel's nicom/csareader and dcm2niix; reimplemented here.

export class CsaError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CsaError';
  }
}

export interface CsaTag {
  name: string;
  vm: number;
  vr: string;
  /** Numbers for numeric VRs (FL FD DS IS SL SS UL US), strings otherwise; trailing empty items dropped. */
  items: (number | string)[];
}

const MAX_ITEMS = 1000;
const NUMERIC_FLOAT = new Set(['FL', 'FD', 'DS']);
const NUMERIC_INT = new Set(['IS', 'SL', 'SS', 'UL', 'US']);

function cString(b: Uint8Array, start: number, len: number): string {
  let end = start;
  const stop = Math.min(start + len, b.length);
  while (end < stop && b[end] !== 0) end++;
  let s = '';
  for (let i = start; i < end; i++) s += String.fromCharCode(b[i]);
  return s;
}

/** Parses a CSA header blob into tags by name. */
export function parseCsaHeader(bytes: Uint8Array): Map<string, CsaTag> {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = bytes.length;
  let p = 0;
  const need = (n: number) => {
    if (p + n > len) throw new CsaError(`the Siemens CSA header ends early (${len} bytes, needed ${p + n}).`);
  };
  const csa2 = len >= 4 && cString(bytes, 0, 4) === 'SV10';
  if (csa2) p = 8;
  need(8);
  const nTags = dv.getUint32(p, true);
  p += 8; // n_tags, then an unused check value (77)
  if (nTags < 1 || nTags > 128) throw new CsaError(`the Siemens CSA header claims ${nTags} tags, outside 1..128.`);
  const tags = new Map<string, CsaTag>();
  let tag0Items = 0;
  for (let t = 0; t < nTags; t++) {
    need(84);
    const name = cString(bytes, p, 64);
    const vm = dv.getInt32(p + 64, true);
    const vr = cString(bytes, p + 68, 4);
    const nItems = dv.getInt32(p + 76, true);
    p += 84;
    if (nItems < 0 || nItems > MAX_ITEMS) throw new CsaError(`the Siemens CSA tag "${name}" claims ${nItems} items.`);
    if (t === 1) tag0Items = nItems;
    let nValues = vm === 0 ? nItems : vm;
    const items: (number | string)[] = [];
    for (let i = 0; i < nItems; i++) {
      need(16);
      const x0 = dv.getInt32(p, true),
        x1 = dv.getInt32(p + 4, true);
      p += 16;
      let itemLen: number;
      if (csa2) {
        itemLen = x1;
        if (itemLen < 0 || p + itemLen > len)
          throw new CsaError(`the Siemens CSA tag "${name}" has an item running past the header's end.`);
      } else {
        // CSA1 stores the item length offset by the item count of tag 1 (nibabel's observation)
        itemLen = x0 - tag0Items;
        if (itemLen < 0 || p + itemLen > len) break;
      }
      if (i < nValues) {
        const raw = cString(bytes, p, itemLen);
        if (NUMERIC_FLOAT.has(vr) || NUMERIC_INT.has(vr)) {
          // an empty item ends the real values of a numeric tag
          if (itemLen === 0 || raw.trim() === '') nValues = i;
          else items.push(NUMERIC_INT.has(vr) ? parseInt(raw, 10) : parseFloat(raw));
        } else items.push(raw);
      }
      p += itemLen + ((4 - (itemLen % 4)) % 4);
    }
    tags.set(name, { name, vm, vr, items });
  }
  return tags;
}

export function csaNumbers(tags: Map<string, CsaTag>, name: string): number[] | undefined {
  const t = tags.get(name);
  if (!t) return undefined;
  const nums = t.items.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  return nums.length ? nums : undefined;
}
