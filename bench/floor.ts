import { spawn, type ChildProcess } from 'node:child_process';
import { readlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from '../src/os/exec.js';
import type { Conflist } from '../src/sandbox/network.js';
import { stopChild } from './daemon.js';

/** A pod made by hand: a namespace holder and the network the CNI plugins gave it. */
export interface FloorPod {
  id: string;
  holder: ChildProcess;
}

const CNI_PATH = '/usr/lib/cni';

/**
 * The floor: what RunPodSandbox and Stop/RemovePodSandbox cannot avoid doing, done by hand. The
 * pause binary is exec'd by `unshare` in new net, ipc and uts namespaces (no `unshare` parent
 * stays), then loopback and the conflist's plugins run directly against its netns, as a
 * runtime's CNI library runs them. No daemon, no gRPC, no state.
 */
export class Floor {
  constructor(
    private readonly conflist: Conflist,
    private readonly pauseBinary: string,
  ) {}

  async run(id: string): Promise<FloorPod> {
    const holder = spawn('unshare', ['--net', '--ipc', '--uts', this.pauseBinary], { stdio: 'ignore' });
    const own = await readlink('/proc/self/ns/net');
    // Until unshare has exec'd, the child still has the bench's network namespace.
    while ((await readlink(`/proc/${String(holder.pid)}/ns/net`).catch(() => own)) === own) {
      if (holder.exitCode !== null) throw new Error('the floor namespace holder exited');
      await sleep(1);
    }
    await this.cni('ADD', id, holder);
    return { id, holder };
  }

  async remove(pod: FloorPod): Promise<void> {
    await this.cni('DEL', pod.id, pod.holder);
    await stopChild(pod.holder);
  }

  /** Runs loopback, then the conflist's chain (DEL: the chain in reverse), each result the next one's prevResult. */
  private async cni(command: 'ADD' | 'DEL', id: string, holder: ChildProcess): Promise<void> {
    const env = {
      PATH: process.env['PATH'],
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/proc/${String(holder.pid)}/ns/net`,
      CNI_PATH,
    };
    const { cniVersion, name } = this.conflist;
    if (command === 'ADD')
      await run(`${CNI_PATH}/loopback`, [], {
        input: JSON.stringify({ cniVersion, name: 'loopback', type: 'loopback' }),
        env: { ...env, CNI_IFNAME: 'lo' },
      });
    const chain = command === 'ADD' ? this.conflist.plugins : [...this.conflist.plugins].reverse();
    let prevResult: unknown;
    for (const plugin of chain) {
      const conf = { cniVersion, name, ...plugin, ...(prevResult === undefined ? {} : { prevResult }) };
      const { stdout } = await run(`${CNI_PATH}/${plugin.type}`, [], {
        input: JSON.stringify(conf),
        env: { ...env, CNI_IFNAME: 'eth0' },
      });
      if (command === 'ADD') prevResult = JSON.parse(stdout) as unknown;
    }
  }
}
