// Reads critest's JUnit report and compares it with expected-pass.txt.
// Usage: node summarize-junit.js junit.xml expected-pass.txt expected-fail.txt out-dir
// Exit 1 when a listed spec did not pass. Writes passing.txt and not-yet-passing.txt to out-dir.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [reportFile, expectedFile, expectedFailFile, outDir] = process.argv.slice(2);
const xml = readFileSync(reportFile, 'utf8');

const unescape = (text) =>
  text
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&');

// Ginkgo writes one <testcase name="[It] …" status="passed|failed|skipped|pending|…"> per spec.
const specs = [];
for (const match of xml.matchAll(/<testcase\s+name="([^"]*)"[^>]*?status="([^"]*)"/g)) {
  const name = unescape(match[1]).replace(/^\[It\]\s+/, '');
  // Suite set-up nodes (BeforeSuite, …) are not specs.
  if (/^\[(BeforeSuite|AfterSuite|SynchronizedBeforeSuite|SynchronizedAfterSuite|ReportAfterSuite)\]/.test(name)) continue;
  specs.push({ name, status: match[2] });
}

const lines = (file) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
const expected = lines(expectedFile);
// expected-fail.txt: "<spec>\t<reason>"
const expectedFail = new Map(lines(expectedFailFile).map((line) => [line.split('\t')[0], line.split('\t')[1] ?? '']));

const byName = new Map(specs.map((spec) => [spec.name, spec.status]));
const passed = specs.filter((spec) => spec.status === 'passed');
const skipped = specs.filter((spec) => spec.status === 'skipped' || spec.status === 'pending');
const regressions = expected.filter((name) => byName.get(name) !== 'passed');
const notListed = passed.filter((spec) => !expected.includes(spec.name));
const failedOrNotYet = specs.filter(
  (spec) => spec.status !== 'passed' && spec.status !== 'skipped' && spec.status !== 'pending' && !expected.includes(spec.name),
);
const knownFailures = failedOrNotYet.filter((spec) => expectedFail.has(spec.name));
const notYet = failedOrNotYet.filter((spec) => !expectedFail.has(spec.name));
const knownButPassing = passed.filter((spec) => expectedFail.has(spec.name));

writeFileSync(
  join(outDir, 'passing.txt'),
  passed
    .map((spec) => spec.name)
    .sort()
    .join('\n') + '\n',
);
writeFileSync(
  join(outDir, 'not-yet-passing.txt'),
  notYet
    .map((spec) => spec.name)
    .sort()
    .join('\n') + '\n',
);

console.log(
  `critest ran ${specs.length} specs: ${passed.length} passed, ${skipped.length} skipped by critest, ` +
    `${knownFailures.length} known to fail here (expected-fail.txt), ` +
    `${notYet.length} not supported by icetray yet (${join(outDir, 'not-yet-passing.txt')})`,
);
for (const spec of knownFailures) console.log(`  known failure: ${spec.name}\n    why: ${expectedFail.get(spec.name)}`);
for (const spec of knownButPassing) console.log(`  listed in expected-fail.txt but passed — move it: ${spec.name}`);
if (notListed.length > 0) {
  console.log(`\nPassing but not yet in expected-pass.txt (${notListed.length}) — add them:`);
  for (const spec of notListed) console.log(`  ${spec.name}`);
}
if (regressions.length > 0) {
  console.log(`\nListed in expected-pass.txt but did not pass (${regressions.length}):`);
  for (const name of regressions) console.log(`  [${byName.get(name) ?? 'not run'}] ${name}`);
}
console.log(
  `${passed.length} passed, ${regressions.length} failed, ${skipped.length + knownFailures.length + notYet.length} skipped`,
);
process.exit(regressions.length > 0 ? 1 : 0);
