import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { pack, type Header } from 'tar-stream';
import { goArch, sha256, type ImageConfig } from './oci.js';
import { MANIFEST_TYPES } from './registry.js';

/**
 * Images made on this node rather than pulled: the pause image from icetray's own pause
 * binary, and a busybox image from Debian's busybox-static for the demo and offline use.
 */

/** An image made on this node: its blobs, ready to be stored like pulled ones. */
export interface LocalImage {
  manifest: Buffer;
  config: Buffer;
  layers: { blob: Buffer; diffId: string; mediaType: string }[];
}

type Entry = { name: string; content?: Buffer; mode?: number; type?: Header['type']; linkname?: string };

async function tarOf(entries: Entry[]): Promise<Buffer> {
  const archive = pack();
  for (const entry of entries) {
    // Fixed owner and time: the same inputs always give the same image id.
    const header: Partial<Header> & Pick<Header, 'name'> = {
      name: entry.name,
      mode: entry.mode ?? 0o755,
      uid: 0,
      gid: 0,
      mtime: new Date(0),
      type: entry.type ?? 'file',
    };
    if (entry.linkname !== undefined) header.linkname = entry.linkname;
    if (entry.content !== undefined) header.size = entry.content.length;
    if (entry.content === undefined) archive.entry(header);
    else archive.entry(header, entry.content);
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** One gzip layer and an OCI config + manifest around it. */
function localImage(tar: Buffer, process: NonNullable<ImageConfig['config']>): LocalImage {
  const blob = gzipSync(tar);
  const diffId = sha256(tar);
  const mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip';
  const config: ImageConfig & { created: string } = {
    created: new Date(0).toISOString(),
    architecture: goArch(),
    os: 'linux',
    config: process,
    rootfs: { type: 'layers', diff_ids: [diffId] },
  };
  const configBytes = Buffer.from(JSON.stringify(config));
  const manifest = {
    schemaVersion: 2,
    mediaType: MANIFEST_TYPES.ociManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(configBytes), size: configBytes.length },
    layers: [{ mediaType, digest: sha256(blob), size: blob.length }],
  };
  return { manifest: Buffer.from(JSON.stringify(manifest)), config: configBytes, layers: [{ blob, diffId, mediaType }] };
}

/**
 * The pause image built from icetray's own pause binary: one layer holding `/pause`, the
 * entrypoint and user of the upstream registry.k8s.io/pause image. Built locally so a node
 * without network (air-gapped) has its sandbox image; the kubelet sees it pinned.
 */
export async function buildPauseImage(pauseBinary: string): Promise<LocalImage> {
  const tar = await tarOf([{ name: 'pause', content: await readFile(pauseBinary) }]);
  return localImage(tar, { User: '65535:65535', Entrypoint: ['/pause'], WorkingDir: '/' });
}

/**
 * A busybox image from the node's busybox-static: /bin/busybox, each applet as a hard link to
 * it (as the upstream image has them), root and nobody accounts. `icetray demo` runs it, so
 * the demonstration needs no registry.
 */
export async function buildBusyboxImage(busybox: string, applets: string[]): Promise<LocalImage> {
  const entries: Entry[] = [
    { name: 'bin/', type: 'directory' },
    { name: 'etc/', type: 'directory' },
    { name: 'tmp/', type: 'directory', mode: 0o1777 },
    { name: 'bin/busybox', content: await readFile(busybox) },
    ...applets
      .filter((applet) => applet !== 'busybox')
      .map((applet): Entry => ({ name: `bin/${applet}`, type: 'link', linkname: 'bin/busybox' })),
    {
      name: 'etc/passwd',
      mode: 0o644,
      content: Buffer.from('root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n'),
    },
    { name: 'etc/group', mode: 0o644, content: Buffer.from('root:x:0:\nnogroup:x:65534:\n') },
  ];
  return localImage(await tarOf(entries), { Cmd: ['sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'], WorkingDir: '/' });
}
