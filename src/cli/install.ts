import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, lstat, mkdir, readFile, readlink, rmdir, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { delimiter, dirname, join, resolve } from 'node:path';
import { FailedPreconditionError, messageOf } from '../errors.js';
import { run } from '../os/exec.js';
import { PACKAGE_ROOT } from '../paths.js';
import { loadFromOptions, type Values } from './config-options.js';

/**
 * `icetray install` puts icetray and crictl on the PATH and points crictl at icetray, as installing
 * containerd or CRI-O does; `icetray uninstall` takes back exactly what it made. What install made
 * is recorded in a manifest beside the links, and uninstall removes an entry only while it is still
 * what was made (same link target, same bytes): a crictl, crictl.yaml or unit the user put there
 * before, or changed since, is never touched.
 */

export const DEFAULT_PREFIX = '/usr/local';
export const DEFAULT_CRICTL_CONFIG = '/etc/crictl.yaml';
export const DEFAULT_UNIT_DIR = '/etc/systemd/system';

/** crictl as conformance/install-cri-tools.sh builds it (same variables, same default). */
const CRICTL_BINARY = join(
  process.env['ICETRAY_TOOLS_DIR'] ?? join('/var/cache/icetray/cri-tools', process.env['CRI_TOOLS_VERSION'] ?? 'v1.37.0'),
  'crictl',
);
const ICETRAY_MAIN = join(PACKAGE_ROOT, 'dist', 'src', 'cli', 'main.js');
const UNIT_FILE = join(PACKAGE_ROOT, 'examples', 'systemd', 'icetray.service');
/** The PATH systemd gives services: a node elsewhere (nvm) must be named in ExecStart. */
const SYSTEMD_PATH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export const INSTALL_HELP = `Usage: icetray install [options]

Link icetray and crictl into PREFIX/bin, write a crictl config pointing at icetray's socket
(only when none exists), and print the next commands to try. Run again, it changes nothing;
an existing file it did not make (a crictl of your own) is left as it is, and said so.

Options:
  --prefix DIR          where bin/ gets the links (default ${DEFAULT_PREFIX})
  --crictl-config FILE  crictl's config (default ${DEFAULT_CRICTL_CONFIG})
  --systemd             also install examples/systemd/icetray.service into the unit folder
                        (only where systemd is PID 1)
  --unit-dir DIR        the unit folder (default ${DEFAULT_UNIT_DIR})
  --config FILE         icetray's config, for its socket (default /etc/icetray/config.toml)
  --socket PATH         the socket crictl is pointed at (default: the config's)
  -h, --help            show this help
`;

export const INSTALL_OPTIONS = {
  prefix: { type: 'string' },
  'crictl-config': { type: 'string' },
  systemd: { type: 'boolean' },
  'unit-dir': { type: 'string' },
  config: { type: 'string' },
  socket: { type: 'string' },
} as const;

export const UNINSTALL_HELP = `Usage: icetray uninstall [options]

Remove what "icetray install" made under PREFIX — its links, the crictl config and unit it wrote
— and only while each is still what it made. Anything else is left, and said so.

Options:
  --prefix DIR          the prefix given to install (default ${DEFAULT_PREFIX})
  -h, --help            show this help
`;

export const UNINSTALL_OPTIONS = { prefix: { type: 'string' } } as const;

/** One thing install made: a symlink (with its target), a file (with its hash) or a folder. */
type Made = { path: string; link: string } | { path: string; sha256: string } | { path: string; dir: true };

interface Manifest {
  made: Made[];
}

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
function text(values: Values, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

function manifestPath(prefix: string): string {
  return join(prefix, 'share', 'icetray', 'installed.json');
}

async function readManifest(prefix: string): Promise<Manifest | undefined> {
  const raw = await readFile(manifestPath(prefix), 'utf8').catch(() => undefined);
  return raw === undefined ? undefined : (JSON.parse(raw) as Manifest);
}

/** The link target or the file's hash now, to compare with what was recorded. */
async function current(path: string): Promise<{ link?: string; sha256?: string; dir?: boolean } | undefined> {
  const info = await lstat(path).catch(() => undefined);
  if (info === undefined) return undefined;
  if (info.isSymbolicLink()) return { link: await readlink(path) };
  if (info.isDirectory()) return { dir: true };
  return { sha256: sha256(await readFile(path, 'utf8')) };
}

function isStillMade(made: Made, now: Awaited<ReturnType<typeof current>>): boolean {
  if (now === undefined) return false;
  if ('link' in made) return now.link === made.link;
  if ('sha256' in made) return now.sha256 === made.sha256;
  return now.dir === true;
}

/** What a run of install changes, recorded as it goes. */
class Installer {
  constructor(readonly manifest: Manifest) {}

  private recorded(path: string): Made | undefined {
    return this.manifest.made.find((m) => m.path === path);
  }

  private record(made: Made): void {
    this.manifest.made = [...this.manifest.made.filter((m) => m.path !== made.path), made];
  }

  /** mkdir -p, recording each folder it creates (so uninstall can remove them once empty). */
  async folder(dir: string): Promise<void> {
    if (existsSync(dir)) return;
    await this.folder(dirname(dir));
    await mkdir(dir);
    this.record({ path: dir, dir: true });
  }

  /** Links `path` to `target` unless something not made by install is there. */
  async link(path: string, target: string): Promise<void> {
    const now = await current(path);
    const mine = this.recorded(path);
    if (now?.link === target) {
      say(
        mine === undefined
          ? `kept ${path}: it already links to ${target} (not made by icetray install)`
          : `${path} → ${target} (already linked)`,
      );
      return;
    }
    if (now !== undefined && (mine === undefined || !isStillMade(mine, now))) {
      const what = now.link !== undefined ? `a link to ${now.link}` : 'a file';
      say(`kept ${path}: it is ${what} that icetray install did not make; icetray's is ${target}`);
      return;
    }
    await this.folder(dirname(path));
    if (now !== undefined) await unlink(path);
    await symlink(target, path);
    this.record({ path, link: target });
    say(`linked ${path} → ${target}`);
  }

  /** Writes `path` when nothing is there (or it is install's own, unchanged); says what was kept. */
  async file(path: string, content: string): Promise<boolean> {
    const now = await current(path);
    const mine = this.recorded(path);
    if (now !== undefined && (mine === undefined || !isStillMade(mine, now))) return false;
    if (now?.sha256 === sha256(content)) {
      say(`${path} is as icetray install wrote it`);
      return true;
    }
    await this.folder(dirname(path));
    await writeFile(path, content, { mode: 0o644 });
    this.record({ path, sha256: sha256(content) });
    say(`wrote ${path}`);
    return true;
  }
}

function crictlConfig(socket: string): string {
  const endpoint = `unix://${resolve(socket)}`;
  return (
    `# Written by "icetray install"; "icetray uninstall" removes it unless it was changed.\n` +
    `runtime-endpoint: ${endpoint}\nimage-endpoint: ${endpoint}\ntimeout: 10\n`
  );
}

/** The unit as examples/ has it, with ExecStart naming this prefix's icetray (and this node, if systemd's PATH lacks it). */
async function unitText(prefix: string): Promise<string> {
  const node = SYSTEMD_PATH.includes(dirname(process.execPath)) ? '' : `${process.execPath} `;
  const unit = await readFile(UNIT_FILE, 'utf8');
  return unit.replace(/^ExecStart=\/usr\/local\/bin\/icetray /m, `ExecStart=${node}${join(prefix, 'bin', 'icetray')} `);
}

/** Turns "permission denied" into the fix. */
function explainDenied(err: unknown): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EACCES' || code === 'EPERM') {
    throw new FailedPreconditionError(
      `${messageOf(err)}: run it as root (sudo), or give folders of your own (--prefix ~/.local --crictl-config FILE)`,
      { cause: err },
    );
  }
  throw err;
}

export async function install(values: Values): Promise<number> {
  const prefix = resolve(text(values, 'prefix') ?? DEFAULT_PREFIX);
  const crictlYaml = resolve(text(values, 'crictl-config') ?? DEFAULT_CRICTL_CONFIG);
  const { socket } = loadFromOptions({ config: values['config'], socket: values['socket'] }).config;
  const bin = join(prefix, 'bin');
  const installer = new Installer((await readManifest(prefix)) ?? { made: [] });
  let code = 0;
  try {
    if (!existsSync(ICETRAY_MAIN)) throw new FailedPreconditionError(`${ICETRAY_MAIN} is not built: run "npm run build"`);
    // tsc writes main.js without the execute bit a link on the PATH needs.
    const mode = (await stat(ICETRAY_MAIN)).mode;
    if ((mode & 0o111) === 0) await chmod(ICETRAY_MAIN, mode | 0o755);
    await installer.link(join(bin, 'icetray'), ICETRAY_MAIN);
    if (existsSync(CRICTL_BINARY)) await installer.link(join(bin, 'crictl'), CRICTL_BINARY);
    else say(`crictl is not built (${CRICTL_BINARY}): run conformance/install-cri-tools.sh (needs Go), then this again`);

    const wanted = crictlConfig(socket);
    if (!(await installer.file(crictlYaml, wanted))) {
      const existing = await readFile(crictlYaml, 'utf8').catch(() => '');
      const endpoint = `unix://${resolve(socket)}`;
      say(
        existing.includes(endpoint)
          ? `kept ${crictlYaml}: it exists and names icetray's socket`
          : `kept ${crictlYaml}: it exists and does not name icetray's socket; to use icetray, put in it:\n` +
              `  runtime-endpoint: ${endpoint}\n  image-endpoint: ${endpoint}`,
      );
    }

    if (values['systemd'] === true) {
      const unitDir = resolve(text(values, 'unit-dir') ?? DEFAULT_UNIT_DIR);
      const unit = join(unitDir, 'icetray.service');
      // sd_booted(3): systemd as PID 1 creates this folder; without it there is no one to read a unit.
      if (!existsSync('/run/systemd/system')) {
        say(
          `not installed ${unit}: systemd is not PID 1 here (/run/systemd/system is absent); ${UNIT_FILE} is the unit to copy on a systemd host`,
        );
        code = 1;
      } else if (await installer.file(unit, await unitText(prefix))) {
        await run('systemctl', ['daemon-reload']);
        say(`start it with:  systemctl enable --now icetray   (it serves ${socket})`);
      } else {
        say(`kept ${unit}: it exists and icetray install did not write it`);
        code = 1;
      }
    }
  } catch (err) {
    explainDenied(err);
  } finally {
    await saveManifest(prefix, installer).catch(explainDenied);
  }

  if (!(process.env['PATH'] ?? '').split(delimiter).includes(bin)) say(`note: ${bin} is not on your PATH`);
  say(
    [
      '',
      'Next, once icetray serves (npm start, icetray serve or the unit), as root in another terminal:',
      '  icetray doctor     check that this node can run pods, with the fix for each problem',
      '  icetray demo       watch a pod being made: what the pause container holds, with evidence',
      '  crictl ps -a       the containers, as the kubelet sees them (crictl pods for the pods)',
    ].join('\n'),
  );
  return code;
}

async function saveManifest(prefix: string, installer: Installer): Promise<void> {
  if (installer.manifest.made.length === 0) return;
  const path = manifestPath(prefix);
  await installer.folder(dirname(path));
  await writeFile(path, `${JSON.stringify(installer.manifest, null, 2)}\n`);
}

export async function uninstall(values: Values): Promise<number> {
  const prefix = resolve(text(values, 'prefix') ?? DEFAULT_PREFIX);
  const manifest = await readManifest(prefix);
  if (manifest === undefined) {
    say(`nothing to remove: no record of an icetray install in ${manifestPath(prefix)}`);
    return 0;
  }
  let unitRemoved = false;
  try {
    await unlink(manifestPath(prefix));
    // Newest first, so folders come after what is in them.
    for (const made of [...manifest.made].reverse()) {
      const now = await current(made.path);
      if ('dir' in made) {
        // Only once empty: something else may have been put in a folder install made.
        if (now?.dir === true) await rmdir(made.path).catch(() => say(`left ${made.path}: not empty`));
        continue;
      }
      if (!isStillMade(made, now)) {
        if (now !== undefined) say(`left ${made.path}: changed since icetray install made it`);
        continue;
      }
      await unlink(made.path);
      if (made.path.endsWith('.service')) unitRemoved = true;
      say(`removed ${made.path}`);
    }
  } catch (err) {
    explainDenied(err);
  }
  if (unitRemoved && existsSync('/run/systemd/system')) await run('systemctl', ['daemon-reload']);
  return 0;
}
