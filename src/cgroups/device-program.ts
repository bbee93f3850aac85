import { endianness } from 'node:os';
import { InvalidArgumentError } from '../errors.js';
import type { DeviceRule } from './devices.js';

/**
 * The cgroup v2 device allowlist as an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE), generated here
 * and loaded by `nsexec device-filter` (native/device-filter.c). cgroup v2 has no devices files:
 * the kernel runs the programs attached to the process's cgroup (and its ancestors') on every
 * open and mknod of a device node, and the access goes ahead only if each of them returns 1.
 *
 * The kernel hands the program, in register r1, a pointer to its question:
 *
 *   struct bpf_cgroup_dev_ctx {       (include/uapi/linux/bpf.h)
 *     u32 access_type;   low 16 bits: the device type, BPF_DEVCG_DEV_BLOCK 1 or BPF_DEVCG_DEV_CHAR 2;
 *                        high 16 bits: the access, BPF_DEVCG_ACC_MKNOD 1 | READ 2 | WRITE 4
 *                        (an O_RDWR open asks READ|WRITE at once)
 *     u32 major;         offset 4
 *     u32 minor;         offset 8
 *   };
 *
 * and the program answers in r0: 1 allow, 0 deny. The one icetray generates is a list of tests,
 * one block per rule, each of which either allows or falls through to the next; after the last,
 * deny:
 *
 *   r2 = ctx->access_type & 0xffff     device type
 *   r3 = ctx->access_type >> 16        access asked
 *   r4 = ctx->major
 *   r5 = ctx->minor
 *   per rule:  if r2 != type   goto next     (each test left out where the rule has a wildcard,
 *              if r4 != major  goto next      and the access test where it allows all of rwm)
 *              if r5 != minor  goto next
 *              if r3 & ~access goto next     (asks for something the rule does not allow)
 *              r0 = 1; exit
 *   r0 = 0; exit
 *
 * which decides exactly as the v1 controller's list does once rules for the same device are
 * merged (devices.ts): allowed when some rule matches the device and covers all the access asked.
 */

/** Values of struct bpf_cgroup_dev_ctx (include/uapi/linux/bpf.h). */
export const BPF_DEVCG_DEV_BLOCK = 1;
export const BPF_DEVCG_DEV_CHAR = 2;
export const BPF_DEVCG_ACC_MKNOD = 1;
export const BPF_DEVCG_ACC_READ = 2;
export const BPF_DEVCG_ACC_WRITE = 4;

/** The most instructions nsexec device-filter takes (MAX_INSNS in native/device-filter.c). */
export const MAX_PROGRAM_INSNS = 4096;

/** One eBPF instruction, as struct bpf_insn: opcode, two 4-bit registers, a jump offset, an immediate. */
export interface Insn {
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
}

// Opcode parts (include/uapi/linux/bpf_common.h and bpf.h): class | operation | source or size.
const BPF_LDX = 0x01;
const BPF_ALU = 0x04; // 32-bit arithmetic: the result's upper half is zeroed
const BPF_JMP = 0x05;
const BPF_ALU64 = 0x07;
const BPF_W = 0x00; // load 4 bytes
const BPF_MEM = 0x60;
const BPF_K = 0x00; // the operand is the immediate
const BPF_AND = 0x50;
const BPF_RSH = 0x70;
const BPF_MOV = 0xb0;
const BPF_JNE = 0x50;
const BPF_JSET = 0x40; // jump if dst & imm is not zero
const BPF_EXIT = 0x90;

const insn = (code: number, dst: number, src: number, off: number, imm: number): Insn => ({ code, dst, src, off, imm });
const loadWord = (dst: number, src: number, off: number) => insn(BPF_LDX | BPF_MEM | BPF_W, dst, src, off, 0);
const alu32 = (op: number, dst: number, imm: number) => insn(BPF_ALU | op | BPF_K, dst, 0, 0, imm);
const mov64 = (dst: number, imm: number) => insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
const jump = (op: number, dst: number, imm: number, off: number) => insn(BPF_JMP | op | BPF_K, dst, 0, off, imm);
const exit = () => insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

/** Opcodes the generator uses, for tests that decode the program (and reject anything else). */
export const OPCODES = {
  loadWord: BPF_LDX | BPF_MEM | BPF_W,
  and32: BPF_ALU | BPF_AND | BPF_K,
  rsh32: BPF_ALU | BPF_RSH | BPF_K,
  mov64: BPF_ALU64 | BPF_MOV | BPF_K,
  jne: BPF_JMP | BPF_JNE | BPF_K,
  jset: BPF_JMP | BPF_JSET | BPF_K,
  exit: BPF_JMP | BPF_EXIT,
} as const;

const ACCESS_BITS: Record<string, number> = { r: BPF_DEVCG_ACC_READ, w: BPF_DEVCG_ACC_WRITE, m: BPF_DEVCG_ACC_MKNOD };
const ALL_ACCESS = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE;

/** The block of one rule: its tests, each jumping past the rest of the block when it fails. */
function ruleBlock(rule: DeviceRule): Insn[] {
  const allowed = Object.entries(ACCESS_BITS).reduce((bits, [c, bit]) => (rule.access.includes(c) ? bits | bit : bits), 0);
  const tests: [op: number, reg: number, imm: number][] = [];
  tests.push([BPF_JNE, 2, rule.type === 'c' ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK]);
  if (rule.major !== '*') tests.push([BPF_JNE, 4, rule.major]);
  if (rule.minor !== '*') tests.push([BPF_JNE, 5, rule.minor]);
  if (allowed !== ALL_ACCESS) tests.push([BPF_JSET, 3, ALL_ACCESS & ~allowed]);
  // A failed test skips the tests after it and the two instructions that allow.
  return [...tests.map(([op, reg, imm], i) => jump(op, reg, imm, tests.length - i - 1 + 2)), mov64(0, 1), exit()];
}

/** The program's instructions for an allowlist (a privileged container gets no program at all). */
export function deviceProgramInsns(rules: readonly DeviceRule[]): Insn[] {
  const insns = [
    loadWord(2, 1, 0),
    alu32(BPF_AND, 2, 0xffff),
    loadWord(3, 1, 0),
    alu32(BPF_RSH, 3, 16),
    loadWord(4, 1, 4),
    loadWord(5, 1, 8),
    ...rules.flatMap(ruleBlock),
    mov64(0, 0),
    exit(),
  ];
  if (insns.length > MAX_PROGRAM_INSNS)
    throw new InvalidArgumentError(
      `too many device rules (${rules.length}): the device program would be ${insns.length} instructions, more than ${MAX_PROGRAM_INSNS}`,
    );
  return insns;
}

/**
 * The instructions as the kernel reads them: 8 bytes each, in the machine's byte order. The two
 * register fields share a byte as C bitfields, dst first: the low nibble on little-endian
 * machines, the high one on big-endian.
 */
export function encodeProgram(insns: readonly Insn[]): Buffer {
  const little = endianness() === 'LE';
  const bytes = Buffer.alloc(insns.length * 8);
  insns.forEach((i, n) => {
    const at = n * 8;
    bytes.writeUInt8(i.code, at);
    bytes.writeUInt8(little ? (i.src << 4) | i.dst : (i.dst << 4) | i.src, at + 1);
    if (little) {
      bytes.writeInt16LE(i.off, at + 2);
      bytes.writeInt32LE(i.imm, at + 4);
    } else {
      bytes.writeInt16BE(i.off, at + 2);
      bytes.writeInt32BE(i.imm, at + 4);
    }
  });
  return bytes;
}

/** The program for an allowlist, ready for `nsexec device-filter`'s stdin. */
export function deviceProgram(rules: readonly DeviceRule[]): Buffer {
  return encodeProgram(deviceProgramInsns(rules));
}
