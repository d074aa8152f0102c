// Evidence accumulates over repeats: when a stimulus is shown again in a session, the mean of its responses so far is
// a less noisy estimate than the single trial (NSD and BrainHub average 3 presentations). Plain typed-array code; the
// pipeline and the offline `responses`/evaluation paths use this one class so live and offline means are identical.
import type { TrialResponse } from '../src/core/types.js';

export interface Presentation {
  /** 1 for the first showing of this stimulus in this session, 2 for the second… */
  presentation: number;
  /** Mean of the responses with data so far (this one included), only from the second presentation on. */
  mean?: Float32Array;
  /** How many responses the mean averages (trials flagged no-data are left out). */
  meanOf?: number;
}

interface Acc {
  shown: number;
  used: number;
  sum: Float64Array;
}

export class RepeatMeans {
  private readonly acc = new Map<string, Acc>();

  /** Bounded: a session shows at most this many distinct stimuli that we keep sums for (oldest forgotten first). */
  constructor(private readonly maxStimuli = 20_000) {}

  static key(subject: string, session: string, stimulusId: string): string {
    return `${subject}\u0000${session}\u0000${stimulusId}`;
  }

  add(session: string, t: Pick<TrialResponse, 'subject' | 'stimulusId' | 'vector' | 'flags'>): Presentation {
    const key = RepeatMeans.key(t.subject, session, t.stimulusId);
    let a = this.acc.get(key);
    if (!a || a.sum.length !== t.vector.length) {
      if (!a && this.acc.size >= this.maxStimuli) this.acc.delete(this.acc.keys().next().value!);
      a = { shown: 0, used: 0, sum: new Float64Array(t.vector.length) };
      this.acc.set(key, a);
    }
    a.shown++;
    if (!t.flags.includes('no-data')) {
      a.used++;
      for (let v = 0; v < t.vector.length; v++) a.sum[v] += t.vector[v];
    }
    if (a.shown < 2 || a.used < 2) return { presentation: a.shown };
    const mean = new Float32Array(a.sum.length);
    const inv = 1 / a.used;
    for (let v = 0; v < mean.length; v++) mean[v] = a.sum[v] * inv;
    return { presentation: a.shown, mean, meanOf: a.used };
  }
}
