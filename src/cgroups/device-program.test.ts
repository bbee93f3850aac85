import { endianness } from 'node:os';
import { describe, expect, it } from 'vitest';
import { deviceProgram, MAX_PROGRAM_INSNS, OPCODES } from './device-program.js';
import { DEFAULT_DEVICE_ACCESS, devicePolicy, type DeviceRule } from './devices.js';

/**
 * The generated eBPF program, checked without a kernel: the bytes are decoded here by a reader of
 * their own (not the generator's encoder), and a tiny interpreter runs them against the kernel's
 * questions (type, major, minor, access) to compare the answer with the v1 controller's rule.
 */

interface Decoded {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

function decode(bytes: Buffer): Decoded[] {
  expect(bytes.length % 8).toBe(0);
  const little = endianness() === 'LE';
  const out: Decoded[] = [];
  for (let at = 0; at < bytes.length; at += 8) {
    const regs = bytes.readUInt8(at + 1);
    out.push({
      code: bytes.readUInt8(at),
      dst: little ? regs & 0xf : regs >> 4,
      src: little ? regs >> 4 : regs & 0xf,
      off: little ? bytes.readInt16LE(at + 2) : bytes.readInt16BE(at + 2),
      imm: little ? bytes.readInt32LE(at + 4) : bytes.readInt32BE(at + 4),
    });
  }
  return out;
}

const BLOCK = 1;
const CHAR = 2;
const MKNOD = 1;
const READ = 2;
const WRITE = 4;

/** Runs a program as the kernel would for one question; fails on anything the generator should never emit. */
function run(program: Decoded[], type: number, major: number, minor: number, access: number): 0 | 1 {
  const MASK64 = (1n << 64n) - 1n;
  const MASK32 = (1n << 32n) - 1n;
  // The context struct bpf_cgroup_dev_ctx, as three little u32s at offsets 0, 4 and 8.
  const ctx = new Map([
    [0, BigInt((access << 16) | type)],
    [4, BigInt(major)],
    [8, BigInt(minor)],
  ]);
  const CTX = 0xc0de_0000n;
  const r: bigint[] = Array<bigint>(11).fill(0n);
  const written = new Set<number>([1, 10]);
  r[1] = CTX;
  for (let pc = 0, steps = 0; ; pc++, steps++) {
    if (steps > 10_000) throw new Error('program does not end');
    const i = program[pc];
    if (i === undefined) throw new Error(`pc ${pc} ran off the end`);
    const reg = (n: number) => {
      if (!written.has(n)) throw new Error(`pc ${pc} reads r${n} before writing it`);
      return r[n] ?? 0n;
    };
    const jumpTo = (taken: boolean) => {
      if (!taken) return;
      pc += i.off;
      if (pc + 1 < 0 || pc + 1 >= program.length) throw new Error(`jump out of the program at ${pc - i.off}`);
    };
    switch (i.code) {
      case OPCODES.loadWord: {
        expect(reg(i.src)).toBe(CTX);
        const value = ctx.get(i.off);
        if (value === undefined) throw new Error(`load from context offset ${i.off}`);
        r[i.dst] = value;
        written.add(i.dst);
        break;
      }
      case OPCODES.and32:
        r[i.dst] = reg(i.dst) & BigInt(i.imm) & MASK32;
        break;
      case OPCODES.rsh32:
        r[i.dst] = (reg(i.dst) & MASK32) >> BigInt(i.imm);
        break;
      case OPCODES.mov64:
        r[i.dst] = BigInt.asUintN(64, BigInt(i.imm)) & MASK64;
        written.add(i.dst);
        break;
      case OPCODES.jne:
        jumpTo(reg(i.dst) !== BigInt.asUintN(64, BigInt(i.imm)));
        break;
      case OPCODES.jset:
        jumpTo((reg(i.dst) & BigInt.asUintN(64, BigInt(i.imm))) !== 0n);
        break;
      case OPCODES.exit: {
        const answer = reg(0);
        if (answer !== 0n && answer !== 1n) throw new Error(`answers ${answer}`);
        return answer === 1n ? 1 : 0;
      }
      default:
        throw new Error(`unknown opcode 0x${i.code.toString(16)} at ${pc}`);
    }
  }
}

/** The v1 controller's answer for the same question (security/device_cgroup.c, match_exception). */
function v1Allows(rules: readonly DeviceRule[], type: number, major: number, minor: number, access: number): 0 | 1 {
  const bits = (a: string) => (a.includes('r') ? READ : 0) | (a.includes('w') ? WRITE : 0) | (a.includes('m') ? MKNOD : 0);
  return rules.some(
    (rule) =>
      (rule.type === 'c' ? CHAR : BLOCK) === type &&
      (rule.major === '*' || rule.major === major) &&
      (rule.minor === '*' || rule.minor === minor) &&
      (access & ~bits(rule.access)) === 0,
  )
    ? 1
    : 0;
}

const defaults = devicePolicy(DEFAULT_DEVICE_ACCESS);
const defaultRules = defaults.kind === 'allowlist' ? defaults.rules : [];

describe('the device program', () => {
  it('reads the context first: type = access_type & 0xffff, access = access_type >> 16, then major and minor', () => {
    const p = decode(deviceProgram(defaultRules));
    expect(p.slice(0, 6)).toEqual([
      { code: 0x61, dst: 2, src: 1, off: 0, imm: 0 },
      { code: 0x54, dst: 2, src: 0, off: 0, imm: 0xffff },
      { code: 0x61, dst: 3, src: 1, off: 0, imm: 0 },
      { code: 0x74, dst: 3, src: 0, off: 0, imm: 16 },
      { code: 0x61, dst: 4, src: 1, off: 4, imm: 0 },
      { code: 0x61, dst: 5, src: 1, off: 8, imm: 0 },
    ]);
    // And ends by denying: r0 = 0; exit.
    expect(p.slice(-2)).toEqual([
      { code: 0xb7, dst: 0, src: 0, off: 0, imm: 0 },
      { code: 0x95, dst: 0, src: 0, off: 0, imm: 0 },
    ]);
  });

  it('encodes a rule as its tests, each skipping the rest of the block, then r0 = 1; exit', () => {
    const p = decode(deviceProgram([{ type: 'b', major: 7, minor: 0, access: 'r' }]));
    expect(p.slice(6, -2)).toEqual([
      { code: 0x55, dst: 2, src: 0, off: 5, imm: BLOCK },
      { code: 0x55, dst: 4, src: 0, off: 4, imm: 7 },
      { code: 0x55, dst: 5, src: 0, off: 3, imm: 0 },
      { code: 0x45, dst: 3, src: 0, off: 2, imm: WRITE | MKNOD },
      { code: 0xb7, dst: 0, src: 0, off: 0, imm: 1 },
      { code: 0x95, dst: 0, src: 0, off: 0, imm: 0 },
    ]);
    // A wildcard leaves its test out, and so does an access of all of rwm.
    const wild = decode(deviceProgram([{ type: 'c', major: 136, minor: '*', access: 'rwm' }]));
    expect(wild.slice(6, -2)).toEqual([
      { code: 0x55, dst: 2, src: 0, off: 3, imm: CHAR },
      { code: 0x55, dst: 4, src: 0, off: 2, imm: 136 },
      { code: 0xb7, dst: 0, src: 0, off: 0, imm: 1 },
      { code: 0x95, dst: 0, src: 0, off: 0, imm: 0 },
    ]);
  });

  it.each([
    ['reads /dev/null', 'allowed', CHAR, 1, 3, READ],
    ['writes /dev/zero', 'allowed', CHAR, 1, 5, WRITE],
    ['opens /dev/urandom read-write', 'allowed', CHAR, 1, 9, READ | WRITE],
    ['opens /dev/ptmx', 'allowed', CHAR, 5, 2, READ | WRITE],
    ['opens a pty, /dev/pts/7', 'allowed', CHAR, 136, 7, READ | WRITE],
    ['mknods loop0', 'allowed', BLOCK, 7, 0, MKNOD],
    ['mknods /dev/kmsg', 'allowed', CHAR, 1, 11, MKNOD],
    ['reads loop0', 'denied', BLOCK, 7, 0, READ],
    ['writes the disk, vda', 'denied', BLOCK, 254, 0, WRITE],
    ['reads /dev/kmsg', 'denied', CHAR, 1, 11, READ],
    ['reads /dev/mem', 'denied', CHAR, 1, 1, READ],
    ['opens /dev/net/tun (left out on purpose)', 'denied', CHAR, 10, 200, READ | WRITE],
    ['reads a block device numbered like /dev/null', 'denied', BLOCK, 1, 3, READ],
  ] as const)('with the default set, a container that %s is %s', (_, answer, type, major, minor, access) => {
    const program = decode(deviceProgram(defaultRules));
    expect(run(program, type, major, minor, access)).toBe(answer === 'allowed' ? 1 : 0);
  });

  it('lets a device node given "r" be read but not written, nor opened read-write', () => {
    const policy = devicePolicy({ privileged: false, nodes: [{ type: 'b', major: 7, minor: 0, access: 'r' }] });
    const program = decode(deviceProgram(policy.kind === 'allowlist' ? policy.rules : []));
    expect(run(program, BLOCK, 7, 0, READ)).toBe(1);
    expect(run(program, BLOCK, 7, 0, WRITE)).toBe(0);
    expect(run(program, BLOCK, 7, 0, READ | WRITE)).toBe(0);
    expect(run(program, BLOCK, 7, 1, READ)).toBe(0);
  });

  it('decides as the v1 controller does, for random allowlists and questions', () => {
    let seed = 11;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const pick = <T>(xs: readonly T[]): T => xs[random(xs.length)] as T;
    for (let round = 0; round < 100; round++) {
      const nodes = Array.from({ length: random(6) }, () => ({
        type: pick(['c', 'b'] as const),
        major: random(4),
        minor: random(4),
        access: pick(['r', 'w', 'm', 'rw', 'rm', 'wm', 'rwm']),
      }));
      const policy = devicePolicy({ privileged: false, nodes });
      if (policy.kind !== 'allowlist') throw new Error('expected an allowlist');
      const program = decode(deviceProgram(policy.rules));
      // The kernel's list as the v1 writes leave it: the same device's rules merged into one.
      const kernelList = new Map<string, DeviceRule>();
      for (const rule of [...defaultRules, ...nodes]) {
        const key = `${rule.type} ${rule.major}:${rule.minor}`;
        const seen = kernelList.get(key);
        kernelList.set(key, seen === undefined ? rule : { ...rule, access: seen.access + rule.access });
      }
      for (let q = 0; q < 50; q++) {
        const [type, major, minor, access] = [pick([BLOCK, CHAR]), random(4), random(4), pick([1, 2, 4, 6])];
        expect(run(program, type, major, minor, access)).toBe(v1Allows([...kernelList.values()], type, major, minor, access));
      }
    }
  });

  it('refuses an allowlist too long for nsexec device-filter', () => {
    const rules: DeviceRule[] = Array.from({ length: MAX_PROGRAM_INSNS / 4 }, (_, n) => ({
      type: 'c',
      major: 200,
      minor: n,
      access: 'rwm',
    }));
    expect(() => deviceProgram(rules)).toThrow(/too many device rules/);
  });
});
