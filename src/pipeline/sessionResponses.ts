// `responses`: the serving chain over every run of a BIDS session, written as `serve --record` writes what the decoder
// saw. Each run's preprocessor is built by runPreprocessor.ts exactly as serve builds it, and runs are fed as replay
// sends them (offlineResponses.ts), so offline and live are one computation.
import { existsSync } from 'node:fs';
import type { BundleManifest } from '../inference/bundle.js';
import { RepeatMeans } from '../../streams/index.js';
import { findBidsRuns, loadBidsRun, type BidsRunFiles } from '../bids/bidsRun.js';
import { runChainOffline } from './offlineResponses.js';
import { loadMask, preprocessorForRun, type LoadedMask } from './runPreprocessor.js';
import { ResponseRecorder, responsePaths } from './responseFiles.js';

export class ResponsesInputError extends Error {}

export interface SessionResponsesOptions {
  session: string;
  manifest: BundleManifest;
  /** Resolves a bundle-relative path (the subject's mask). */
  bundlePath: (rel: string) => string;
  out: string;
  subject?: string;
  /** Only runs with these names (BIDS entities after sub/ses, e.g. task-vision_run-01). */
  runs?: string[];
  /** ROI mask in the runs' functional space; default: the bundle's mask for the subject. */
  mask?: string;
  log?: (m: string) => void;
}

export interface SessionResponsesResult {
  runs: {
    subject: string;
    session: string;
    run: string;
    trials: number;
    voxels: number;
    flagged: number;
    npy: string;
    tsv: string;
  }[];
}

export async function writeSessionResponses(o: SessionResponsesOptions): Promise<SessionResponsesResult> {
  let runs: BidsRunFiles[];
  try {
    runs = findBidsRuns(o.session);
  } catch (e) {
    throw new ResponsesInputError((e as Error).message);
  }
  if (o.subject) runs = runs.filter((r) => r.subject === o.subject);
  if (o.runs) runs = runs.filter((r) => o.runs!.includes(r.run));
  if (!runs.length)
    throw new ResponsesInputError(
      `no *_bold.nii[.gz] runs${o.subject ? ` of sub-${o.subject}` : ''} under ${o.session}; pass a BIDS session folder${o.subject ? ' or another --subject' : ''}.`,
    );
  for (const r of runs) {
    if (!r.events)
      throw new ResponsesInputError(
        `run ${r.run} of sub-${r.subject} has no _events.tsv beside ${r.bold}; responses needs the stimulus events to know the trials.`,
      );
    const p = responsePaths(o.out, r.subject, r.session, r.run);
    if (existsSync(p.npy) || existsSync(p.tsv))
      throw new ResponsesInputError(`${p.tsv} already exists; remove it or pass another --out.`);
  }
  const masks = new Map<string, LoadedMask>();
  const maskFor = (subject: string): LoadedMask => {
    const cached = masks.get(subject);
    if (cached) return cached;
    let path = o.mask;
    if (!path) {
      const entry = o.manifest.subjects[subject];
      if (!entry)
        throw new ResponsesInputError(
          `the model bundle has no mask for sub-${subject} (it has ${Object.keys(o.manifest.subjects).join(', ')}); pass --mask FILE with an ROI in this person's functional space.`,
        );
      path = o.bundlePath(entry.mask);
    }
    if (!existsSync(path)) throw new ResponsesInputError(`mask ${path} does not exist; check --mask.`);
    let m: LoadedMask;
    try {
      m = loadMask(path);
    } catch (e) {
      throw new ResponsesInputError(`mask ${path} is not a readable NIfTI image (${(e as Error).message}).`);
    }
    masks.set(subject, m);
    return m;
  };
  const recorder = new ResponseRecorder(o.out);
  const repeats = new RepeatMeans();
  const result: SessionResponsesResult = { runs: [] };
  for (const f of runs) {
    let run;
    try {
      run = loadBidsRun(f);
    } catch (e) {
      throw new ResponsesInputError(
        `run ${f.run} of sub-${f.subject} could not be read (${(e as Error).message}); is the file truncated? Re-copy it or leave the run out.`,
      );
    }
    if (!run.events.length)
      throw new ResponsesInputError(
        `run ${f.run} of sub-${f.subject} has an events file without trials (${f.events}); responses needs onset, duration and stimulus_id rows.`,
      );
    const mask = maskFor(f.subject);
    let pre;
    try {
      pre = preprocessorForRun(o.manifest, mask, run.info);
    } catch (e) {
      throw new ResponsesInputError(`run ${f.run} of sub-${f.subject} does not fit the mask: ${(e as Error).message}`);
    }
    let trials;
    try {
      trials = await runChainOffline(run, pre);
    } catch (e) {
      throw new ResponsesInputError(
        `run ${f.run} of sub-${f.subject} could not be processed (${(e as Error).message}); is the file truncated?`,
      );
    }
    trials.sort((a, b) => a.trial - b.trial);
    for (const t of trials) {
      const p = repeats.add(f.session, t);
      await recorder.record(
        {
          subject: f.subject,
          session: f.session,
          run: f.run,
          trial: t.trial,
          stimulusId: t.stimulusId,
          onset: t.event.onset,
          presentation: p.presentation,
          estimator: t.method,
          window: t.window,
          volumes: t.volumes,
          flags: t.flags,
          bundle: o.manifest.name,
          maskSha256: mask.sha256,
        },
        t.vector,
      );
    }
    recorder.close(f.subject, f.session, f.run);
    const paths = responsePaths(o.out, f.subject, f.session, f.run);
    const flagged = trials.filter((t) => t.flags.length > 0).length;
    result.runs.push({
      subject: f.subject,
      session: f.session,
      run: f.run,
      trials: trials.length,
      voxels: pre.roiVoxels,
      flagged,
      npy: paths.npy,
      tsv: paths.tsv,
    });
    o.log?.(
      `responses: ${f.run} of sub-${f.subject}: ${trials.length} trial(s) × ${pre.roiVoxels} voxels${flagged ? `, ${flagged} flagged` : ''} → ${paths.npy}`,
    );
  }
  await recorder.flush();
  return result;
}
