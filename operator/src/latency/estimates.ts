// The latency estimate per Deployment: what the refresher last learned, turned into the value
// planning uses. Reconcilers read it synchronously; only the refresher writes it.
//
// Stabilization (HPA's scale-down rule): the published latency is the highest trusted one seen
// within the stabilization window, so a higher latency is published at once and a lower one only
// once every higher value has aged out of the window. An unknown observation (source down, too
// few samples, no data) never replaces a known one: the last known stays published, marked stale.
import type { Estimate, LatencyObservation } from '../policy/types.ts';

export type { Estimate };

type Known = Extract<LatencyObservation, { known: true }>;

interface Entry {
  trackedSince: number;
  /** Trusted observations inside the stabilization window, oldest first. */
  history: { at: number; observation: Known }[];
  lastKnown: Known | undefined;
  lastKnownAt: number;
  estimate: Estimate;
}

export interface UpdateOptions {
  stabilizationMs: number;
  /** An observation with fewer samples is not trusted (not stabilized, not published as known). */
  minSamples: number;
}

/** Published latencies within 1 % of each other are the same news (plans round up to seconds). */
const SAME_LATENCY = 0.01;

/** Whether two estimates would plan or report differently (sample counts alone do not count). */
function sameEstimate(a: Estimate | undefined, b: Estimate): boolean {
  if (!a) return false;
  const key = (e: Estimate) => {
    const p = e.published;
    return JSON.stringify([
      p.known,
      p.source,
      p.known ? [p.atLeast ?? false, p.percentile, p.window] : [p.reason, p.unavailable ?? false],
      e.stale,
      e.trusted,
      e.canLower,
      e.latest.known ? undefined : e.latest.reason,
    ]);
  };
  if (key(a) !== key(b)) return false;
  const [x, y] = [a.published, b.published];
  return (
    !x.known || !y.known || Math.abs(x.seconds - y.seconds) <= SAME_LATENCY * Math.max(x.seconds, y.seconds)
  );
}

export class EstimateCache {
  readonly #entries = new Map<string, Entry>();
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  get(key: string): Estimate | undefined {
    return this.#entries.get(key)?.estimate;
  }

  keys(): string[] {
    return [...this.#entries.keys()];
  }

  /** Forgets a Deployment (deleted, or no longer selected by a policy with a source). */
  delete(key: string): boolean {
    return this.#entries.delete(key);
  }

  /** Records the source's answer; true when the estimate changed in a way planning or status sees. */
  update(key: string, latest: LatencyObservation, options: UpdateOptions): boolean {
    const now = this.#now();
    const entry: Entry = this.#entries.get(key) ?? {
      trackedSince: now,
      history: [],
      lastKnown: undefined,
      lastKnownAt: now,
      estimate: {
        published: latest,
        latest,
        refreshedAt: now,
        publishedAt: now,
        stale: false,
        trusted: false,
        canLower: false,
      },
    };
    const before = this.#entries.has(key) ? entry.estimate : undefined;
    const trusted = latest.known && latest.samples >= options.minSamples;
    if (latest.known && trusted) {
      entry.history.push({ at: now, observation: latest });
      entry.lastKnown = latest;
      entry.lastKnownAt = now;
    }
    entry.history = entry.history.filter((h) => now - h.at < options.stabilizationMs || h.at === now);
    let published: LatencyObservation = latest;
    let publishedAt = now;
    if (entry.history.length > 0) {
      // The highest latency of the window; on a tie the newest (its sample count is current).
      let top = entry.history[0] as Entry['history'][number];
      for (const h of entry.history) if (h.observation.seconds >= top.observation.seconds) top = h;
      published = top.observation;
      publishedAt = top.at;
    } else if (entry.lastKnown) {
      published = entry.lastKnown;
      publishedAt = entry.lastKnownAt;
    }
    const estimate: Estimate = {
      published,
      latest,
      refreshedAt: now,
      publishedAt,
      stale: published !== latest && !trusted,
      trusted: published.known && published.samples >= options.minSamples,
      canLower: now - entry.trackedSince >= options.stabilizationMs,
    };
    const changed = !sameEstimate(before, estimate);
    // The same value observed again is not news: keep the time it was first published.
    if (!changed && before) estimate.publishedAt = before.publishedAt;
    entry.estimate = estimate;
    this.#entries.set(key, entry);
    return changed;
  }
}
