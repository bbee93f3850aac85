import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import {
  DEFAULT_DEVICE_ACCESS,
  DEFAULT_DEVICES,
  devicePolicy,
  parseDevicesList,
  ruleString,
  samePolicy,
  v1DeviceWrites,
} from './devices.js';

const loop0 = { type: 'b' as const, major: 7, minor: 0, access: 'r' };

describe('device allowlist', () => {
  it("is containerd's default set plus runc's mknod rules, without runc's tun", () => {
    const policy = devicePolicy(DEFAULT_DEVICE_ACCESS);
    expect(policy.kind === 'allowlist' && policy.rules.map(ruleString)).toEqual([
      'c *:* m',
      'b *:* m',
      'c 1:3 rwm',
      'c 1:5 rwm',
      'c 1:7 rwm',
      'c 1:8 rwm',
      'c 1:9 rwm',
      'c 5:0 rwm',
      'c 5:1 rwm',
      'c 5:2 rwm',
      'c 136:* rwm',
    ]);
    expect(DEFAULT_DEVICES.every((d) => d.why !== '')).toBe(true);
  });

  it('adds the requested nodes, merging rules for the same device as the v1 controller does', () => {
    const policy = devicePolicy({
      privileged: false,
      nodes: [loop0, { type: 'b', major: 7, minor: 0, access: 'mw' }, { type: 'c', major: 1, minor: 3, access: 'r' }],
    });
    expect(policy.kind === 'allowlist' && policy.rules.map(ruleString).slice(-2)).toEqual(['c 136:* rwm', 'b 7:0 rwm']);
    expect(policy.kind === 'allowlist' && policy.rules.filter((r) => r.major === 1 && r.minor === 3).map(ruleString)).toEqual([
      'c 1:3 rwm',
    ]);
  });

  it('allows everything to a privileged container, whatever its nodes', () => {
    expect(devicePolicy({ privileged: true, nodes: [loop0] })).toEqual({ kind: 'all' });
  });

  it.each([
    ['a type that is neither c nor b', { type: 'p', major: 1, minor: 1, access: 'r' }],
    ['a major above 12 bits', { type: 'c', major: 4096, minor: 1, access: 'r' }],
    ['a negative minor', { type: 'c', major: 1, minor: -1, access: 'r' }],
    ['a minor above 20 bits', { type: 'c', major: 1, minor: 2 ** 20, access: 'r' }],
    ['an empty access', { type: 'c', major: 1, minor: 1, access: '' }],
    ['an access with x', { type: 'c', major: 1, minor: 1, access: 'rx' }],
    ['an access with a repeat', { type: 'c', major: 1, minor: 1, access: 'rr' }],
  ])('refuses a node with %s', (_, node) => {
    expect(() => devicePolicy({ privileged: false, nodes: [node as typeof loop0] })).toThrow(InvalidArgumentError);
  });

  it('writes v1 as devices.deny "a" first, then one devices.allow line per rule; privileged is devices.allow "a"', () => {
    const writes = v1DeviceWrites(devicePolicy({ privileged: false, nodes: [loop0] }));
    expect(writes[0]).toEqual({ file: 'devices.deny', value: 'a' });
    expect(writes.slice(1).every((w) => w.file === 'devices.allow')).toBe(true);
    expect(writes.at(-1)).toEqual({ file: 'devices.allow', value: 'b 7:0 r' });
    expect(v1DeviceWrites({ kind: 'all' })).toEqual([{ file: 'devices.allow', value: 'a' }]);
  });

  it('reads devices.list back as the kernel lists it, and compares policies in any order', () => {
    const policy = devicePolicy(DEFAULT_DEVICE_ACCESS);
    const list = policy.kind === 'allowlist' ? [...policy.rules].reverse().map(ruleString).join('\n') + '\n' : '';
    expect(samePolicy(parseDevicesList(list), policy)).toBe(true);
    expect(samePolicy(parseDevicesList(`${list}b 7:0 r\n`), policy)).toBe(false);
    expect(samePolicy(parseDevicesList('a *:* rwm\n'), { kind: 'all' })).toBe(true);
    expect(samePolicy(parseDevicesList('a *:* rwm\n'), policy)).toBe(false);
    expect(samePolicy(parseDevicesList(''), policy)).toBe(false);
    expect(() => parseDevicesList('x 1:2 r')).toThrow(/unexpected line/);
  });
});
