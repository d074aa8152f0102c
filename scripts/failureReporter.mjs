// A node:test reporter that writes one JSON line per failed test (file, name, first lines of the error), so the test
// runner's closing summary can name what failed: CI shows only the tail of the log.
export default async function* failureReporter(source) {
  for await (const event of source) {
    if (event.type !== 'test:fail') continue;
    const d = event.data;
    // Suites fail when a child fails; the child's own line says more.
    if (d.details?.type === 'suite') continue;
    const err = d.details?.error;
    const cause = err?.cause ?? err;
    const message = String(cause?.message ?? cause ?? 'failed')
      .split('\n')
      .slice(0, 6)
      .join('\n');
    yield `${JSON.stringify({ file: d.file ?? '', name: d.name, message })}\n`;
  }
}
