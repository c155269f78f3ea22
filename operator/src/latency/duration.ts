// Prometheus durations (30s, 1h30m, 7d) as milliseconds, the way Prometheus reads them:
// units ms, s, m, h, d (24 h), w (7 d), y (365 d), largest first, each at most once.
const unitMs = {
  y: 365 * 86_400_000,
  w: 7 * 86_400_000,
  d: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
};
const order = ['y', 'w', 'd', 'h', 'm', 's', 'ms'] as const;

/** Milliseconds of a Prometheus duration; throws naming the text when it is not one. */
export function parsePrometheusDuration(text: string): number {
  const parts = [...text.matchAll(/(\d+)(ms|s|m|h|d|w|y)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new Error(`"${text}" is not a Prometheus duration (like 30s, 5m, 1h30m, 7d)`);
  }
  let last = -1;
  let ms = 0;
  for (const [, value, unit] of parts) {
    const index = order.indexOf(unit as (typeof order)[number]);
    if (index <= last)
      throw new Error(`"${text}": a Prometheus duration takes its units from largest to smallest, each once`);
    last = index;
    ms += Number(value) * unitMs[unit as keyof typeof unitMs];
  }
  return ms;
}
