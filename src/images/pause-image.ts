import { readFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';
import { goArch, sha256, type ImageConfig } from './oci.js';
import { MANIFEST_TYPES } from './registry.js';

/** An image made on this node: its blobs, ready to be stored like pulled ones. */
export interface LocalImage {
  manifest: Buffer;
  config: Buffer;
  layers: { blob: Buffer; diffId: string; mediaType: string }[];
}

async function tarOf(name: string, content: Buffer): Promise<Buffer> {
  const archive = pack();
  // Fixed owner, mode and time: the same binary always gives the same image id.
  archive.entry({ name, size: content.length, mode: 0o755, uid: 0, gid: 0, mtime: new Date(0), type: 'file' }, content);
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/**
 * The pause image built from icetray's own pause binary: one layer holding `/pause`, the
 * entrypoint and user of the upstream registry.k8s.io/pause image. Built locally so a node
 * without network (air-gapped) has its sandbox image; the kubelet sees it pinned.
 */
export async function buildPauseImage(pauseBinary: string): Promise<LocalImage> {
  const tar = await tarOf('pause', await readFile(pauseBinary));
  const blob = gzipSync(tar);
  const diffId = sha256(tar);
  const mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip';
  const config: ImageConfig & { created: string } = {
    created: new Date(0).toISOString(),
    architecture: goArch(),
    os: 'linux',
    config: { User: '65535:65535', Entrypoint: ['/pause'], WorkingDir: '/' },
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
