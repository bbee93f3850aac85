import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { useTempDirs } from '../../test/helpers/temp.js';
import { ContainerLogWriter, formatLogEntry, logTimestamp, MAX_LOG_LINE, parseLogEntry } from './logs.js';

const tempDir = useTempDirs('icetray-logs-');

async function logFile(): Promise<string> {
  return join(await tempDir(), 'pod', 'c.log');
}

function entries(text: string) {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => parseLogEntry(line));
}

describe('CRI container logs', () => {
  it('formats RFC 3339 timestamps with nanoseconds', () => {
    expect(logTimestamp(1_475_713_029_669_794_202n)).toBe('2016-10-06T00:17:09.669794202Z');
    const [a, b] = [logTimestamp(), logTimestamp()];
    expect(a <= b).toBe(true);
    expect(formatLogEntry('stdout', 'F', 'hello', '2016-10-06T00:17:09.669794202Z')).toBe(
      '2016-10-06T00:17:09.669794202Z stdout F hello\n',
    );
  });

  it('writes one F entry per line, keeps the streams apart, and ends an unfinished last line with P (issue #16)', async () => {
    const path = await logFile();
    const writer = await ContainerLogWriter.open(path);
    const out = new PassThrough();
    const err = new PassThrough();
    const following = [writer.follow('stdout', out), writer.follow('stderr', err)];
    out.write('hello ');
    out.write('World\nsecond line\n');
    err.end('oops\n');
    out.end('no newline at the end');
    await Promise.all(following);
    await writer.close();
    const written = entries(await readFile(path, 'utf8'));
    expect(written.map((e) => [e?.stream, e?.tag, e?.text])).toEqual([
      ['stdout', 'F', 'hello World'],
      ['stdout', 'F', 'second line'],
      ['stderr', 'F', 'oops'],
      ['stdout', 'P', 'no newline at the end'],
    ]);
  });

  it('cuts a line longer than 16 KiB into P entries ending with an F', async () => {
    const path = await logFile();
    const writer = await ContainerLogWriter.open(path);
    writer.write('stdout', `${'x'.repeat(MAX_LOG_LINE + 10)}\n`);
    await writer.close();
    const written = entries(await readFile(path, 'utf8'));
    expect(written.map((e) => [e?.tag, e?.text.length])).toEqual([
      ['P', MAX_LOG_LINE],
      ['F', 10],
    ]);
  });

  it('reopens the file after the rotator renamed it: new output goes to the new file only', async () => {
    const path = await logFile();
    const writer = await ContainerLogWriter.open(path);
    writer.write('stdout', 'before\n');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await rename(path, `${path}.1`);
    await writer.reopen();
    writer.write('stdout', 'after\n');
    await writer.close();
    expect(entries(await readFile(`${path}.1`, 'utf8')).map((e) => e?.text)).toEqual(['before']);
    expect(entries(await readFile(path, 'utf8')).map((e) => e?.text)).toEqual(['after']);
  });
});
