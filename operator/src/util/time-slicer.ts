// Long synchronous work on Node's one thread holds up everything else the process serves: timers,
// watch events, the admission webhook. A loop that calls `pause()` between units of work gives
// the event loop a turn once every `sliceMs` of work, and counts the work without those turns.
import { setImmediate as nextTurn } from 'node:timers/promises';

/** Milliseconds of synchronous work between two turns of the event loop. */
const SLICE_MS = 5;

export class TimeSlicer {
  readonly #sliceMs: number;
  #started = performance.now();
  #workedMs = 0;

  constructor(sliceMs: number = SLICE_MS) {
    this.#sliceMs = sliceMs;
  }

  /** Resolves at once, or after a turn of the event loop once the slice is used up. */
  async pause(): Promise<void> {
    const now = performance.now();
    if (now - this.#started < this.#sliceMs) return;
    this.#workedMs += now - this.#started;
    await nextTurn();
    this.#started = performance.now();
  }

  /** Milliseconds spent working since construction, the turns given away not counted. */
  get workedMs(): number {
    return this.#workedMs + (performance.now() - this.#started);
  }
}
