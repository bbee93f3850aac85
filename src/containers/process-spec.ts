import { InvalidArgumentError } from '../errors.js';
import type { ContainerConfig } from '../generated/api.js';

/** The parts of an image config (OCI `config`) a container's process is built from. */
export interface ImageProcessDefaults {
  entrypoint: string[];
  cmd: string[];
  env: string[];
  workingDir: string;
  user: string;
}

/**
 * The argv of a container, as Kubernetes merges the pod spec with the image
 * (https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/):
 * `command` replaces the image's ENTRYPOINT and drops its CMD; `args` alone replaces CMD.
 */
export function containerArgv(
  config: Pick<ContainerConfig, 'command' | 'args'>,
  image: Pick<ImageProcessDefaults, 'entrypoint' | 'cmd'>,
): string[] {
  const entrypoint = config.command.length > 0 ? config.command : image.entrypoint;
  const cmd = config.args.length > 0 || config.command.length > 0 ? config.args : image.cmd;
  const argv = [...entrypoint, ...cmd];
  if (argv.length === 0) throw new InvalidArgumentError('no command: the container config has none and neither has the image');
  return argv;
}

/** The environment: the image's first, then the config's, a later key replacing an earlier one. */
export function containerEnv(config: Pick<ContainerConfig, 'envs'>, image: Pick<ImageProcessDefaults, 'env'>): string[] {
  const env = new Map<string, string>();
  for (const entry of image.env) {
    const eq = entry.indexOf('=');
    env.set(eq === -1 ? entry : entry.slice(0, eq), eq === -1 ? '' : entry.slice(eq + 1));
  }
  for (const { key, value } of config.envs) {
    if (key === '' || key.includes('=')) throw new InvalidArgumentError(`env key "${key}" is not a valid name`);
    env.set(key, value.toString('utf8'));
  }
  // A PATH is what every shell expects; images normally set one.
  if (!env.has('PATH')) env.set('PATH', '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  return [...env].map(([key, value]) => `${key}=${value}`);
}

export function containerWorkingDir(
  config: Pick<ContainerConfig, 'workingDir'>,
  image: Pick<ImageProcessDefaults, 'workingDir'>,
): string {
  const dir = config.workingDir !== '' ? config.workingDir : image.workingDir !== '' ? image.workingDir : '/';
  if (!dir.startsWith('/')) throw new InvalidArgumentError(`working_dir "${dir}" must be an absolute path`);
  return dir;
}
