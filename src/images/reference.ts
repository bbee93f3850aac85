import { InvalidArgumentError } from '../errors.js';

/**
 * Image references as the kubelet and docker spell them, normalised the way containerd's
 * `reference/docker.ParseDockerRef` does: a name without a registry is on docker.io, a
 * one-component docker.io name is under `library/`, a name without tag or digest is `:latest`,
 * and a name with both a tag and a digest keeps only the digest (the digest is what is pulled).
 */
export interface ImageReference {
  /** The registry host, with its port: `docker.io`, `registry.k8s.io`, `127.0.0.1:5000`. */
  registry: string;
  /** The repository path inside the registry: `library/busybox`, `e2e-test-images/busybox`. */
  repository: string;
  /** The tag, when the reference names one (undefined when it names a digest). */
  tag: string | undefined;
  /** `sha256:<hex>` when the reference names a digest. */
  digest: string | undefined;
}

export const DOCKER_HUB = 'docker.io';

// The grammar of github.com/distribution/reference (reference.go).
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$/;

/** True when `text` is a full image id or manifest digest: `sha256:` and 64 hex digits. */
export function isDigest(text: string): boolean {
  return DIGEST.test(text);
}

/** Parses and normalises an image reference; throws InvalidArgumentError naming it when malformed. */
export function parseReference(text: string): ImageReference {
  const bad = (why: string): InvalidArgumentError => new InvalidArgumentError(`invalid image reference "${text}": ${why}`);
  if (text === '') throw bad('it is empty');
  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad('the digest must be sha256: and 64 lower-case hex digits');
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag "${tag}" is not valid`);
  }
  let registry = DOCKER_HUB;
  let path = rest;
  const first = rest.indexOf('/');
  if (first !== -1) {
    const head = rest.slice(0, first);
    // Docker's rule: the first component is a registry when it looks like a host.
    if (head.includes('.') || head.includes(':') || head === 'localhost' || head.startsWith('[')) {
      if (!HOST.test(head)) throw bad(`registry "${head}" is not a host name`);
      registry = head;
      path = rest.slice(first + 1);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (path === '') throw bad('the repository name is empty');
  for (const component of path.split('/')) {
    if (!COMPONENT.test(component))
      throw bad(`repository component "${component}" must be lower-case letters, digits and separators`);
  }
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`;
  if (digest !== undefined) tag = undefined;
  else tag ??= 'latest';
  return { registry, repository: path, tag, digest };
}

/** `registry/repository`, the name tags and digests hang on. */
export function repositoryName(ref: Pick<ImageReference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

/** The normalised reference: `docker.io/library/busybox:latest` or `…@sha256:…`. */
export function formatReference(ref: ImageReference): string {
  return ref.digest !== undefined ? `${repositoryName(ref)}@${ref.digest}` : `${repositoryName(ref)}:${ref.tag ?? 'latest'}`;
}
