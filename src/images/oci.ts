import { createHash } from 'node:crypto';
import { InvalidArgumentError, UnimplementedError } from '../errors.js';
import { MANIFEST_TYPES } from './registry.js';

/**
 * The OCI image-spec documents icetray reads (https://github.com/opencontainers/image-spec):
 * index (and Docker's manifest list), manifest (and Docker v2 schema 2) and image config.
 */

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { architecture: string; os: string; variant?: string };
}

export type ParsedManifest =
  { kind: 'index'; manifests: Descriptor[] } | { kind: 'manifest'; config: Descriptor; layers: Descriptor[] };

/** The parts of an image config icetray uses (image-spec config.md). */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    User?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    StopSignal?: string;
    ExposedPorts?: Record<string, unknown> | null;
    Labels?: Record<string, string> | null;
  };
  rootfs: { type: string; diff_ids: string[] };
}

export const LAYER_TYPES = [
  'application/vnd.oci.image.layer.v1.tar',
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
];

export function sha256(bytes: Buffer | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function descriptor(value: unknown, where: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (typeof d !== 'object' || d === null || typeof d.digest !== 'string' || !/^sha256:[a-f0-9]{64}$/.test(d.digest))
    throw new InvalidArgumentError(`${where}: a descriptor without a sha256 digest`);
  if (typeof d.size !== 'number' || d.size < 0) throw new InvalidArgumentError(`${where}: descriptor ${d.digest} has no size`);
  return {
    mediaType: typeof d.mediaType === 'string' ? d.mediaType : '',
    digest: d.digest,
    size: d.size,
    ...(d.platform ? { platform: d.platform } : {}),
  };
}

/** Parses an index or manifest by its media type; Docker schema 1 and unknown types are refused. */
export function parseManifest(bytes: Buffer, mediaType: string, name: string): ParsedManifest {
  let json: { manifests?: unknown[]; config?: unknown; layers?: unknown[]; schemaVersion?: number };
  try {
    json = JSON.parse(bytes.toString('utf8')) as typeof json;
  } catch {
    throw new InvalidArgumentError(`manifest of ${name} is not JSON`);
  }
  if (mediaType === MANIFEST_TYPES.ociIndex || mediaType === MANIFEST_TYPES.dockerList) {
    return { kind: 'index', manifests: (json.manifests ?? []).map((m) => descriptor(m, `index of ${name}`)) };
  }
  if (mediaType === MANIFEST_TYPES.ociManifest || mediaType === MANIFEST_TYPES.dockerManifest) {
    const layers = (json.layers ?? []).map((l) => descriptor(l, `manifest of ${name}`));
    for (const layer of layers) {
      if (!LAYER_TYPES.includes(layer.mediaType))
        throw new UnimplementedError(
          `layer ${layer.digest} of ${name} has media type "${layer.mediaType}", which icetray cannot unpack`,
        );
    }
    return { kind: 'manifest', config: descriptor(json.config, `manifest of ${name}`), layers };
  }
  throw new UnimplementedError(
    `manifest of ${name} has media type "${mediaType}": icetray reads OCI and Docker v2 schema 2 manifests`,
  );
}

/** Go's name for this machine's architecture, as image platforms spell it. */
export function goArch(arch: string = process.arch): string {
  const names: Record<string, string> = {
    x64: 'amd64',
    ia32: '386',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
  };
  return names[arch] ?? arch;
}

/** The index entry for linux on this machine's architecture (containerd's platforms.Default()). */
export function choosePlatform(manifests: Descriptor[], name: string, arch = goArch()): Descriptor {
  const match = manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch);
  if (match === undefined) {
    const offered = manifests.map((m) => `${m.platform?.os ?? '?'}/${m.platform?.architecture ?? '?'}`).join(', ');
    throw new InvalidArgumentError(`image ${name} has no linux/${arch} manifest (it offers ${offered || 'none'})`);
  }
  return match;
}

export function parseConfig(bytes: Buffer, name: string): ImageConfig {
  let config: Partial<ImageConfig>;
  try {
    config = JSON.parse(bytes.toString('utf8')) as Partial<ImageConfig>;
  } catch {
    throw new InvalidArgumentError(`config of ${name} is not JSON`);
  }
  if (!Array.isArray(config.rootfs?.diff_ids)) throw new InvalidArgumentError(`config of ${name} has no rootfs.diff_ids`);
  return config as ImageConfig;
}

/**
 * uid and username from the config's `User` (`uid`, `name`, `uid:gid`, `name:group`), as
 * containerd's image status reports them: a number is a uid, anything else a username.
 */
export function imageUser(user: string): { uid: bigint | undefined; username: string } {
  if (user === '') return { uid: undefined, username: '' };
  const name = user.split(':')[0] ?? '';
  return /^\d+$/.test(name) ? { uid: BigInt(name), username: '' } : { uid: undefined, username: name };
}
