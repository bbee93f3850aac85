import { describe, expect, it } from 'vitest';
import { formatReference, parseReference } from './reference.js';

describe('image references, normalised as docker and containerd do', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['user/app', 'docker.io/user/app:latest'],
    ['gcr.io/k8s-staging-cri-tools/test-image-latest', 'gcr.io/k8s-staging-cri-tools/test-image-latest:latest'],
    ['127.0.0.1:5000/app:v1', '127.0.0.1:5000/app:v1'],
    ['localhost/app', 'localhost/app:latest'],
    [`app:v1@sha256:${'a'.repeat(64)}`, `docker.io/library/app@sha256:${'a'.repeat(64)}`],
  ])('%s is %s', (input, expected) => {
    expect(formatReference(parseReference(input))).toBe(expected);
  });

  it.each(['', 'UPPER/case', 'app@sha256:short', 'app:bad/tag', 'a//b', 'app:'])('refuses "%s"', (input) => {
    expect(() => parseReference(input)).toThrow(/invalid image reference/);
  });
});
