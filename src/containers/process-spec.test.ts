import { describe, expect, it } from 'vitest';
import { ContainerConfig } from '../generated/api.js';
import { containerArgv, containerEnv, containerWorkingDir } from './process-spec.js';

const image = {
  entrypoint: ['/docker-entrypoint.sh'],
  cmd: ['nginx', '-g', 'daemon off;'],
  env: ['PATH=/bin', 'A=image'],
  workingDir: '/srv',
  user: '',
};

describe('the container process, merged from the config and the image', () => {
  it.each([
    ['neither command nor args: ENTRYPOINT + CMD', [], [], ['/docker-entrypoint.sh', 'nginx', '-g', 'daemon off;']],
    ['args only: ENTRYPOINT + args', [], ['sh'], ['/docker-entrypoint.sh', 'sh']],
    ['command only: command, the image CMD dropped', ['top'], [], ['top']],
    ['command and args', ['sh', '-c'], ['echo hi'], ['sh', '-c', 'echo hi']],
  ])('%s', (_rule, command, args, expected) => {
    expect(containerArgv(ContainerConfig.fromPartial({ command, args }), image)).toEqual(expected);
  });

  it('refuses a container with no command at all', () => {
    expect(() => containerArgv(ContainerConfig.fromPartial({}), { entrypoint: [], cmd: [] })).toThrow(/no command/);
  });

  it('lets config env override the image env, keeping order', () => {
    const config = ContainerConfig.fromPartial({
      envs: [
        { key: 'A', value: Buffer.from('config') },
        { key: 'B', value: Buffer.from('x=y') },
      ],
    });
    expect(containerEnv(config, image)).toEqual(['PATH=/bin', 'A=config', 'B=x=y']);
  });

  it('takes the working dir from the config, else the image, else /', () => {
    expect(containerWorkingDir(ContainerConfig.fromPartial({ workingDir: '/app' }), image)).toBe('/app');
    expect(containerWorkingDir(ContainerConfig.fromPartial({}), image)).toBe('/srv');
    expect(containerWorkingDir(ContainerConfig.fromPartial({}), { workingDir: '' })).toBe('/');
    expect(() => containerWorkingDir(ContainerConfig.fromPartial({ workingDir: 'rel' }), image)).toThrow(/absolute/);
  });
});
