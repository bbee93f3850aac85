import { mkdir, readdir, readFile, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  UnavailableError,
} from '../errors.js';
import { log } from '../log.js';
import { normalizePath } from './names.js';
import type { FileWrite } from './resources.js';

/**
 * The only reader and writer of cgroup files. A tree is a cgroup mount root (/sys/fs/cgroup, or a
 * test's folder): v2 when the root itself is a cgroup (cgroup.controllers), else v1 with one
 * hierarchy per sub-folder (memory, cpu, cpu,cpuacct, the named "systemd" one, and in hybrid
 * mode the v2 "unified" one). A cgroup is named by its path from the root of every hierarchy.
 */

/** One mounted hierarchy: its folder and the controllers whose files live in it. */
export interface Hierarchy {
  /** The folder's name under the root ("memory", "cpu,cpuacct", "systemd", "unified"); '' on v2. */
  name: string;
  dir: string;
  controllers: string[];
  /** A cgroup v2 mount: the whole tree on v2, the "unified" one beside v1 controllers (hybrid mode). */
  v2: boolean;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    // ENODEV: the file of a cgroup removed while it was read (a stats call racing RemoveContainer).
    if (errno(err) === 'ENOENT' || errno(err) === 'ENODEV') return undefined;
    throw err;
  }
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** The controller a file belongs to: its prefix ("memory.max" → memory); cgroup.* is in every hierarchy. */
function controllerOf(file: string): string {
  return file.slice(0, file.indexOf('.'));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class CgroupTree {
  private constructor(
    readonly root: string,
    readonly version: 1 | 2,
    readonly hierarchies: readonly Hierarchy[],
  ) {}

  /** Reads which version and hierarchies a cgroup root holds; fails when it holds none. */
  static async open(root: string): Promise<CgroupTree> {
    const v2Controllers = await readOptional(join(root, 'cgroup.controllers'));
    if (v2Controllers !== undefined) {
      const controllers = v2Controllers.trim().split(/\s+/).filter(Boolean);
      return new CgroupTree(root, 2, [{ name: '', dir: root, controllers, v2: true }]);
    }
    const hierarchies: Hierarchy[] = [];
    const entries = await readdir(root, { withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      // cpu and cpuacct are often symlinks to "cpu,cpuacct": the real folder is the hierarchy.
      if (!entry.isDirectory()) continue;
      const dir = join(root, entry.name);
      if ((await readOptional(join(dir, 'cgroup.procs'))) === undefined) continue;
      // A v2 mount beside v1 ones (hybrid mode) and the named systemd hierarchy hold no v1
      // resource files: processes are placed in them only so that every hierarchy agrees.
      const v2 = (await readOptional(join(dir, 'cgroup.controllers'))) !== undefined;
      const placementOnly = entry.name === 'systemd' || v2;
      hierarchies.push({ name: entry.name, dir, controllers: placementOnly ? [] : entry.name.split(','), v2 });
    }
    if (hierarchies.length === 0) {
      throw new UnavailableError(
        `no cgroup hierarchy is mounted at ${root}: neither cgroup v2 (cgroup.controllers) nor v1 controllers`,
      );
    }
    hierarchies.sort((a, b) => a.name.localeCompare(b.name));
    return new CgroupTree(root, 1, hierarchies);
  }

  hasController(controller: string): boolean {
    return this.hierarchies.some((h) => h.controllers.includes(controller));
  }

  /** The folders of a cgroup, one per hierarchy (only those named, when `names` is given). */
  dirs(cgroup: string, names?: readonly string[]): string[] {
    return this.pick(names).map((h) => join(h.dir, normalizePath(cgroup)));
  }

  private pick(names: readonly string[] | undefined): readonly Hierarchy[] {
    return names === undefined ? this.hierarchies : this.hierarchies.filter((h) => names.includes(h.name));
  }

  /**
   * The cgroup's folder in the v2 hierarchy, where device programs attach (device-program.ts); on
   * a hybrid host the one in "unified", which the kernel checks as well as the v1 controllers.
   * Undefined when no v2 hierarchy is mounted.
   */
  v2Dir(cgroup: string): string | undefined {
    const hierarchy = this.hierarchies.find((h) => h.v2);
    return hierarchy === undefined ? undefined : join(hierarchy.dir, normalizePath(cgroup));
  }

  /** The folder holding a file of a cgroup, or undefined when its controller is not mounted. */
  private dirOf(cgroup: string, file: string): string | undefined {
    const controller = controllerOf(file);
    const hierarchy = this.version === 2 ? this.hierarchies[0] : this.hierarchies.find((h) => h.controllers.includes(controller));
    return hierarchy === undefined ? undefined : join(hierarchy.dir, normalizePath(cgroup));
  }

  /** A file's content, or undefined when the file (or its controller) is not there. */
  async read(cgroup: string, file: string): Promise<string | undefined> {
    const dir = this.dirOf(cgroup, file);
    return dir === undefined ? undefined : readOptional(join(dir, file));
  }

  async exists(cgroup: string): Promise<boolean> {
    return (await this.presentIn(cgroup)).length > 0;
  }

  /** The names of the hierarchies the cgroup exists in. */
  async presentIn(cgroup: string): Promise<string[]> {
    const present = await Promise.all(this.hierarchies.map((h) => isDir(join(h.dir, normalizePath(cgroup)))));
    return this.hierarchies.filter((_, i) => present[i]).map((h) => h.name);
  }

  /**
   * Creates a cgroup and its missing ancestors in every hierarchy (or those named). v1 cpuset
   * starts a new cgroup with no CPUs or memory nodes, where no process may run: each new level
   * takes its parent's, as runc does. v2 makes a controller's files appear in a child only once
   * the parent enables it in cgroup.subtree_control.
   */
  async create(cgroup: string, names?: readonly string[]): Promise<void> {
    const parts = normalizePath(cgroup).split('/').filter(Boolean);
    for (const hierarchy of this.pick(names)) {
      let dir = hierarchy.dir;
      for (const part of parts) {
        if (this.version === 2) await this.enableControllers(dir);
        const child = join(dir, part);
        if (!(await isDir(child))) {
          await mkdir(child).catch((err: unknown) => {
            if (errno(err) !== 'EEXIST') throw this.failure('create', child, err);
          });
          if (hierarchy.controllers.includes('cpuset')) await this.inheritCpuset(dir, child);
        }
        dir = child;
      }
    }
  }

  private async enableControllers(dir: string): Promise<void> {
    const available = (await readOptional(join(dir, 'cgroup.controllers')))?.trim().split(/\s+/).filter(Boolean) ?? [];
    const enabled = new Set((await readOptional(join(dir, 'cgroup.subtree_control')))?.trim().split(/\s+/));
    const missing = available.filter((c) => !enabled.has(c));
    if (missing.length > 0) await this.writeIn(dir, 'cgroup.subtree_control', missing.map((c) => `+${c}`).join(' '));
  }

  private async inheritCpuset(parent: string, child: string): Promise<void> {
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      const mine = (await readOptional(join(child, file)))?.trim();
      const theirs = (await readOptional(join(parent, file)))?.trim();
      if ((mine === undefined || mine === '') && theirs !== undefined) await this.writeIn(child, file, theirs);
    }
  }

  async write(cgroup: string, file: string, value: string): Promise<void> {
    const dir = this.dirOf(cgroup, file);
    if (dir === undefined)
      throw new UnavailableError(`cannot set ${file} of cgroup "${cgroup}": the ${controllerOf(file)} controller is not mounted`);
    await this.writeIn(dir, file, value);
  }

  private async writeIn(dir: string, file: string, value: string): Promise<void> {
    try {
      await writeFile(join(dir, file), value);
    } catch (err) {
      throw this.failure(`set ${file} = ${JSON.stringify(value)} in`, dir, err);
    }
  }

  /**
   * Applies resource writes. A write whose controller is absent fails, except hugetlb (the kubelet
   * sends a limit for every page size, and a v1 node may not mount hugetlb) and optional files.
   * v1 checks some values against others (quota against period, memory against memsw), so writes
   * that the kernel refused are retried once after the rest.
   */
  async apply(cgroup: string, writes: readonly FileWrite[]): Promise<void> {
    const retry: FileWrite[] = [];
    for (const w of writes) {
      const dir = this.dirOf(cgroup, w.file);
      if (dir === undefined && controllerOf(w.file) === 'hugetlb') {
        // The kubelet sends a limit for every page size, 0 when the pod asks for none: only a
        // real request is worth a warning (issue #16: two lines per container otherwise).
        const line = { cgroup, file: w.file, value: w.value };
        if (w.value === '0') log.debug(line, 'hugetlb controller not mounted: zero hugepage limit not applied');
        else log.warn(line, 'hugetlb controller not mounted: hugepage limit not applied');
        continue;
      }
      if (w.ifExists === true && (dir === undefined || (await readOptional(join(dir, w.file))) === undefined)) continue;
      try {
        await this.write(cgroup, w.file, w.value);
      } catch (err) {
        if (!(err instanceof InvalidArgumentError || err instanceof FailedPreconditionError)) throw err;
        retry.push(w);
      }
    }
    for (const w of retry) await this.write(cgroup, w.file, w.value);
  }

  /** Moves a process into the cgroup in every hierarchy (or those named). */
  async addProcess(cgroup: string, pid: number, names?: readonly string[]): Promise<void> {
    for (const dir of this.dirs(cgroup, names)) {
      try {
        await writeFile(join(dir, 'cgroup.procs'), String(pid));
      } catch (err) {
        if (errno(err) === 'ESRCH') throw new NotFoundError(`process ${pid} is gone: cannot place it in cgroup "${cgroup}"`);
        throw this.failure(`add process ${pid} to`, dir, err);
      }
    }
  }

  /** The processes in a cgroup, in any hierarchy. */
  async pids(cgroup: string): Promise<number[]> {
    const seen = new Set<number>();
    for (const dir of this.dirs(cgroup)) {
      const text = (await readOptional(join(dir, 'cgroup.procs'))) ?? '';
      for (const line of text.split('\n')) if (line.trim() !== '') seen.add(Number(line));
    }
    return [...seen].sort((a, b) => a - b);
  }

  /** The child cgroups of a cgroup, in any hierarchy. */
  async children(cgroup: string): Promise<string[]> {
    const names = new Set<string>();
    for (const dir of this.dirs(cgroup)) {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries) if (e.isDirectory()) names.add(e.name);
    }
    return [...names].sort();
  }

  /**
   * Deletes a cgroup in every hierarchy (or those named); one already gone is no error. The kernel
   * refuses while processes remain (EBUSY); a process that just exited can hold the cgroup a few
   * milliseconds more, so that is retried briefly, as runc does.
   */
  async remove(cgroup: string, names?: readonly string[]): Promise<void> {
    let busy: unknown;
    for (const dir of this.dirs(cgroup, names)) {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(dir);
          break;
        } catch (err) {
          const code = errno(err);
          if (code === 'ENOENT') break;
          // The kernel never answers ENOTEMPTY for a cgroup: this is a plain folder (a test's fake tree).
          if (code === 'ENOTEMPTY' && (await this.clearFakeFiles(dir))) continue;
          if (code !== 'EBUSY') throw this.failure('remove', dir, err);
          const live = ((await readOptional(join(dir, 'cgroup.procs'))) ?? '').trim() !== '';
          if (live || attempt >= 10) {
            busy = err;
            break;
          }
          await sleep(10 * (attempt + 1));
        }
      }
    }
    if (busy !== undefined) {
      throw new FailedPreconditionError(`cannot remove cgroup "${cgroup}": it still has processes or child cgroups`, {
        cause: busy,
      });
    }
  }

  private async clearFakeFiles(dir: string): Promise<boolean> {
    const entries = await readdir(dir, { withFileTypes: true });
    if (entries.some((e) => e.isDirectory())) return false;
    await Promise.all(entries.map((e) => rm(join(dir, e.name))));
    return true;
  }

  private failure(what: string, path: string, err: unknown): Error {
    const code = errno(err) ?? 'error';
    const message = `failed to ${what} cgroup ${path}: ${code}`;
    switch (code) {
      // EACCES is v1 cpuset's answer for CPUs or memory nodes outside its parent's (root has every permission).
      case 'EINVAL':
      case 'ERANGE':
      case 'EOVERFLOW':
      case 'EACCES':
        return new InvalidArgumentError(message, { cause: err });
      case 'EBUSY':
        return new FailedPreconditionError(message, { cause: err });
      // A parent's memory limit too small for the new cgroup's own structures.
      case 'ENOMEM':
        return new ResourceExhaustedError(message, { cause: err });
      default:
        return new UnavailableError(message, { cause: err });
    }
  }
}
