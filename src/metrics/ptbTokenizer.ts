/**
 * A TypeScript re-implementation of what pycocoevalcap 1.2 does to a caption before scoring: Stanford CoreNLP 3.4.1's
 * PTBTokenizer with `-preserveLines -lowerCase`, then its punctuation list removed. It follows the PTBLexer rules that
 * occur in image captions (words, contractions, hyphenated and slashed compounds, numbers, abbreviations that keep their
 * period, quotes, brackets as -lrb-/-rrb-, currency and dash normalisation); docs/metrics.md lists measured differences.
 */

// Punctuation tokens pycocoevalcap drops after tokenizing (tokenizer/ptbtokenizer.py).
const PUNCTUATIONS = new Set([
  "''",
  "'",
  '``',
  '`',
  '-LRB-',
  '-RRB-',
  '-LCB-',
  '-RCB-',
  '.',
  '?',
  '!',
  ',',
  ':',
  '-',
  '--',
  '...',
  ';',
]);

const L = '[\\p{L}\\p{M}]';
const LD = '[\\p{L}\\p{M}\\p{Nd}]';
const APOS = "['\\u0092\\u2019]";
const APOSETC = "['`\\u0091\\u0092\\u2018\\u2019\\u201B]";
const SPACE = '[ \\t\\u00A0\\u2000-\\u200A\\u3000]';
const ABTITLE =
  'Mr|Mrs|Ms|Miss|Drs?|Profs?|Sens?|Reps?|Attys?|Lt|Col|Gen|Messrs|Govs?|Adm|Rev|Maj|Sgt|Cpl|Pvt|Mt|Capt|Ste?|Ave|Pres|Lieut|Hon|Brig|Co?mdr|Pfc|Spc|Supts?|Det|M|MM|Mme|Mmes|Mlle|Mlles';
const ABBREV1 =
  '(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|Mon|Tue|Tues|Wed|Thu|Thurs|Fri|Ala|Ariz|Az|Ark|Calif|Colo|Conn|Ct|Dak|Del|Fla|Ga|Ill|Ind|Kans?|Ky|La|Mass|Md|Mich|Minn|Miss|Mo|Mont|Neb|Nev|Okla|Ore|Pa|Penn|Tenn|Tex|Va|Vt|Wash|Wisc?|Wyo|Inc|Cos?|Corp|Pp?t[ye]s?|Ltd|Plc|Bancorp|Dept|Bhd|Assn|Univ|Intl|Sys|Jr|Sr|Bros|(?:Ed|Ph)\\.D|Blvd|Rd|Esq|etc|al|seq)\\.';
const ACRO = '[A-Za-z](?:\\.[A-Za-z])*';
const ACRO2 = '[A-Za-z](?:\\.[A-Za-z])+';
const HYPHEN = '[-_\\u058A\\u2010\\u2011]';
const THINGPART = `(?:[dDoOlL]${APOSETC}${LD})?${LD}+`;

interface Rule {
  re: RegExp;
  /** Trailing context that must follow (JFlex `r1/r2`); it counts toward the longest match but is not consumed. */
  ctx?: RegExp;
  /** Token text to emit; default the matched text. Return null to emit nothing. */
  out?: (m: string) => string | null;
}

function rule(src: string, ctx?: string, out?: (m: string) => string | null): Rule {
  return { re: new RegExp(src, 'uy'), ctx: ctx === undefined ? undefined : new RegExp(ctx, 'uy'), out };
}

const WORD = `${L}${LD}*(?:[.!?]${L}${LD}*)*`;

// In priority order: the longest match (including trailing context) wins, ties go to the earlier rule, as in JFlex.
const RULES: Rule[] = [
  // Assimilations PTBLexer splits (can|not, gon|na, ...): trailing context makes them tie with WORD, and they come first.
  rule('[Cc]an', 'not(?![\\p{L}\\p{Nd}])'),
  rule('[Gg]on|[Ww]an', 'na(?![\\p{L}\\p{Nd}])'),
  rule('[Gg]ot', 'ta(?![\\p{L}\\p{Nd}])'),
  rule('[Ll]em|[Gg]im', 'me(?![\\p{L}\\p{Nd}])'),
  rule("'[Tt]", 'is(?![\\p{L}\\p{Nd}])'),
  rule('[A-Za-z\\u00AD]*[A-MO-Za-mo-z]\\u00AD*', `n${APOSETC}t`),
  rule(WORD, `${APOS}(?:[msdMSD]|re|ve|ll)`),
  rule(
    `${APOS}n${APOS}?t|[lLdDjJ]${APOS}|Dunkin${APOS}|somethin${APOS}|ol${APOS}|${APOS}em|[A-HJ-XZn]${APOSETC}${L}{2}${L}*|${APOS}[2-9]0s|${APOS}till?|${L}+[aeiouyAEIOUY]${APOSETC}[aeiouA-Z]${L}*|${APOS}cause|cont'd\\.?|'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l|O${APOSETC}o`,
  ),
  rule(WORD),
  rule(`y${APOS}`, L),
  rule('https?://[^ \\t\\n\\f\\r"<>|()]+[^ \\t\\n\\f\\r"<>|.!?(){},-]'),
  rule(
    '(?:www\\.(?:[^ \\t\\n\\f\\r"<>|.!?(){},]+\\.)+[a-zA-Z]{2,4}|(?:[^ \\t\\n\\f\\r"`\'<>|.!?(){},\\-_$]+\\.)+(?:com|net|org|edu))(?:/[^ \\t\\n\\f\\r"<>|()]+[^ \\t\\n\\f\\r"<>|.!?(){},-])?',
  ),
  rule(
    '[a-zA-Z0-9][^ \\t\\n\\f\\r"<>|()\\u00A0{}]*@(?:[^ \\t\\n\\f\\r"<>|(){}.\\u00A0]+\\.)*[^ \\t\\n\\f\\r"<>|(){}\\[\\].,;:\\u00A0]+',
  ),
  rule('@[a-zA-Z_][a-zA-Z_0-9]*'),
  rule(`#${WORD}`),
  rule('[\\p{L}\\p{Nd}]+(?:-[\\p{L}\\p{Nd}]+){0,2}(?:\\\\?/[\\p{L}\\p{Nd}]+(?:-[\\p{L}\\p{Nd}]+){0,2}){1,2}'),
  rule('\\p{Nd}{1,2}[-/]\\p{Nd}{1,2}[-/]\\p{Nd}{2,4}'),
  rule('[-+]?(?:\\p{Nd}*(?:[.:,\\u00AD\\u066B\\u066C]\\p{Nd}+)+|\\p{Nd}+)'),
  // Fractions may contain a space, which the tokenizer turns into a no-break space inside the token.
  rule('(?:\\p{Nd}{1,4}[- \\u00A0])?\\p{Nd}{1,4}(?:\\\\?/|\\u2044)\\p{Nd}{1,4}', undefined, (m) =>
    m.replace(/ /g, '\u00A0'),
  ),
  rule(ABBREV1),
  // "No." and "Art." keep their period only before a number ("No. 5"), otherwise it is a full stop.
  rule('(?:[Nn]os?|Art)\\.', `${SPACE}*\\p{Nd}`),
  rule(`(?:${ABTITLE}|${ACRO2})\\.`),
  rule(`(?:[A-Za-z]|${ABTITLE}|vs|Alex|Wm|Jos|Cie|a\\.k\\.a|cf|TREAS|${ACRO}|Invt|Elec|Natl|M[ft]g|Dept)\\.`, SPACE),
  rule(ACRO, '[ \\t\\u00A0\\u2000-\\u200A\\u3000\\n]'),
  rule(`[\\p{L}\\p{Nd}][A-Za-z0-9.,\\u00AD]*(?:-(?:[A-Za-z0-9\\u00AD]+|${ACRO2}\\.))+`),
  rule(`${THINGPART}(?:${HYPHEN}${THINGPART})*`),
  rule('[A-Z]+(?:[+&][A-Z]+)+'),
  rule('<\\/?[A-Za-z!?][^>\\r\\n]*>'),
  rule(`${APOS}(?:[msdMSD]|re|ve|ll)`, '(?:[^A-Za-z]|$)'),
  rule(`n${APOSETC}t`),
  rule('"|&quot;', '[A-Za-z0-9$]', () => '``'),
  rule('"|&quot;', undefined, () => "''"),
  rule('[\\u201C\\u201E\\u00AB\\u2018\\u201A\\u201B\\u0091\\u0093]', undefined, (m) =>
    m === '\u2018' || m === '\u201A' || m === '\u201B' || m === '\u0091' ? '`' : '``',
  ),
  rule('[\\u201D\\u00BB\\u2019\\u0092\\u0094]', undefined, (m) => (m === '\u2019' || m === '\u0092' ? "'" : "''")),
  rule('\\.\\.\\.+|\\u2026', undefined, () => '...'),
  rule('[?!]+'),
  rule('--+|[\\u2013\\u2014\\u2015\\u0096\\u0097]', undefined, () => '--'),
  rule('-'),
  rule('[A-Z]*\\$|\\u20AC', undefined, (m) => (m === '\u20AC' ? '$' : m)),
  rule('[\\u00A3]', undefined, () => '#'),
  rule('\\*+'),
  rule('\\(', undefined, () => '-LRB-'),
  rule('\\)', undefined, () => '-RRB-'),
  rule('\\[', undefined, () => '-LSB-'),
  rule('\\]', undefined, () => '-RSB-'),
  rule('\\{', undefined, () => '-LCB-'),
  rule('\\}', undefined, () => '-RCB-'),
  rule("``|''|`|'"),
];
const SPACES = /[\s\u00A0\u2000-\u200A\u3000\u0085]+/uy;
const ANY = /./suy;

/** PTB tokens of one line (case preserved, punctuation kept), as PTBTokenizer -preserveLines prints them. */
export function ptbTokens(line: string): string[] {
  const tokens: string[] = [];
  let pos = 0;
  const n = line.length;
  while (pos < n) {
    SPACES.lastIndex = pos;
    if (SPACES.test(line)) {
      pos = SPACES.lastIndex;
      continue;
    }
    let best: Rule | undefined;
    let bestText = '';
    let bestLen = 0;
    for (const r of RULES) {
      r.re.lastIndex = pos;
      const m = r.re.exec(line);
      if (!m || m[0].length === 0) continue;
      let len = m[0].length;
      if (r.ctx) {
        r.ctx.lastIndex = pos + len;
        const c = r.ctx.exec(line);
        if (!c) continue;
        len += c[0].length;
      }
      if (len > bestLen) {
        best = r;
        bestLen = len;
        bestText = m[0];
      }
    }
    if (!best) {
      // Anything else (symbols such as ™, %, &, +): one token per code point, as PTBLexer's catch-all rule does.
      ANY.lastIndex = pos;
      const ch = ANY.exec(line)![0];
      tokens.push(ch);
      pos += ch.length;
      continue;
    }
    const out = best.out ? best.out(bestText) : bestText;
    if (out !== null) tokens.push(out);
    pos += bestText.length;
  }
  return tokens;
}

// Line breaks that the Java lexer honours; pycocoevalcap turns "\n" into a space and evalcaps does the same for the rest.
// eslint-disable-next-line no-control-regex -- \v and \f end lines for the Java lexer
const LINE_BREAKS = /[\n\r\u2028\u2029\u000B\u000C\u0085]/g;

/** A caption as pycocoevalcap scores it: PTB-tokenized, lower-cased, punctuation removed, tokens joined by spaces. */
export function ptbTokenize(caption: string): string {
  const tokens = ptbTokens(caption.replace(LINE_BREAKS, ' '));
  const kept: string[] = [];
  for (const t of tokens) {
    // -lowerCase applies before pycocoevalcap's filter, so "-LRB-" in its list never matches and "-lrb-" stays.
    const lower = t.toLowerCase();
    if (!PUNCTUATIONS.has(lower)) kept.push(lower);
  }
  return kept.join(' ');
}
