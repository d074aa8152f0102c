import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ptbTokenize } from '../../src/metrics/ptbTokenizer.js';
import { brainhubCandidateSets, brainhubRefs, oracle } from './brainhub.js';

// Everyday caption shapes plus the PTB rules they touch; each is checked against the Stanford jar, not a hand answer.
const CRAFTED = [
  'A man riding a wave on top of a surfboard.',
  'A plate with a sandwich, chips, and a pickle on it.',
  "The 2 dogs are in the back-seat of a car; one's asleep.",
  'A "No Parking" sign on a pole at 5:30pm.',
  "an old-fashioned, black & white photo of a 1950's diner",
  'People at the beach with kites -- a sunny day!',
  'A man in a suit and tie talking on his cell phone...',
  "Isn't this the best pizza you've ever had?",
  'A bathroom w/ a toilet & sink',
  'a sign reading "STOP" at an intersection near St. Mary\'s church',
  'a 10-year-old boy plays frisbee (ultimate) in the park',
  'they are gonna wanna gotta lemme gimme cannot',
  'He saw Mr. Smith.',
  'I like the U.S. and the U.S.A. today',
  'Plan B. is vitamin c. good',
  'a -5 degree 5-6 and 50% 3/4 1990s 30s 4x4 1st 2nd',
  'hello.world wow!! what?! ok... end.. x---y -- --- ***',
  "a \"quoted\" word and 'single' quotes `back' ''two''",
  '$5 US$5 £5 €5 #tag @user',
  'Jan. 5 etc. al. Inc. Dr. St. Ave. Co. vs. e.g. i.e. a.m. p.m. No. 5',
  'Yes. No. Mr.',
  '(a) [b] {c} a+b a=b',
  "don't can't won't isn't y'all I'm you're we'll she'd it's",
  'café naïve ÉCOLE ß',
  "o'neil l'amour the cats' toys",
  'a b.c d.e.f. ok',
  'two\nlines',
  '',
  '   ',
];

test('ptbTokenize equals pycocoevalcap (Stanford PTB jar + punctuation removal) on every BrainHub caption', () => {
  const refs = brainhubRefs();
  const sentences = [
    ...new Set([
      ...Object.values(refs).flat(),
      ...brainhubCandidateSets().flatMap((s) => Object.values(s.cands)),
      ...CRAFTED,
    ]),
  ];
  assert.ok(sentences.length > 14000);
  const { tokenized } = oracle({ sentences });
  const diffs: string[] = [];
  sentences.forEach((s, i) => {
    const ours = ptbTokenize(s);
    if (ours !== tokenized[i])
      diffs.push(`${JSON.stringify(s)}: jar ${JSON.stringify(tokenized[i])}, ours ${JSON.stringify(ours)}`);
  });
  assert.deepEqual(diffs, []);
});

test('ptbTokenize keeps what pycocoevalcap keeps', () => {
  assert.equal(ptbTokenize('A man (in red) rides a horse.'), 'a man -lrb- in red -rrb- rides a horse');
  assert.equal(ptbTokenize("Don't stop, it's U.S. made"), "do n't stop it 's u.s. made");
  assert.equal(ptbTokenize('what?! -- ok...'), 'what ?! ok');
});
