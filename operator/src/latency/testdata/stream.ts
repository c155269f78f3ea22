// A response body for the exposition reader's tests: the text as a stream of `chunk`-byte pieces
// (lines and characters split across them).
export function bodyStream(text: string, chunk = Number.POSITIVE_INFINITY): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  let at = 0;
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      const end = Math.min(bytes.length, at + chunk);
      controller.enqueue(bytes.subarray(at, end));
      at = end;
    },
  });
}
