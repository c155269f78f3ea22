/** A JSON object (a mapping): not null, not an array. One check for every untyped input. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
