import { messageOf } from '../errors.js';
import type { ImageStatusResponse, VersionResponse } from '../generated/api.js';
import type { CheckResult } from './checks.js';

/** The few CRI calls doctor makes to a running icetray, as any CRI client would. */
export interface CriProbe {
  version(): Promise<VersionResponse>;
  imageStatus(image: string): Promise<ImageStatusResponse>;
  /** The gRPC status code of the old v1alpha2 Version call (12 = UNIMPLEMENTED). */
  v1alpha2Code(): Promise<number>;
  close(): void;
}

const UNIMPLEMENTED = 12;

/**
 * The socket answers CRI v1. v1alpha2 was removed in Kubernetes 1.26: a kubelet or crictl
 * that still asks for it talks to nothing, so icetray must not answer it.
 */
export async function checkSocket(probe: CriProbe, socket: string): Promise<CheckResult> {
  const name = 'CRI socket';
  try {
    const version = await probe.version();
    const alpha = await probe.v1alpha2Code();
    const evidence =
      `unix://${socket} answers ${version.runtimeName} ${version.runtimeVersion}, CRI ${version.runtimeApiVersion}; ` +
      (alpha === UNIMPLEMENTED
        ? 'v1alpha2 is not served (removed in Kubernetes 1.26: clients must use v1)'
        : `v1alpha2 answered code ${alpha}`);
    if (version.runtimeApiVersion !== 'v1') return { name, ok: false, evidence, fix: 'use a runtime that speaks CRI v1' };
    return { name, ok: true, evidence, fix: '' };
  } catch (err) {
    return {
      name,
      ok: false,
      evidence: `unix://${socket} does not answer: ${messageOf(err)}`,
      fix: `start it: icetray serve --socket ${socket}`,
    };
  }
}

/**
 * The pause image is in the store and pinned: the kubelet no longer keeps it from image
 * garbage collection (kubernetes#118544), and an air-gapped node without it cannot start pods.
 */
export async function checkPauseImage(probe: CriProbe, pauseImage: string): Promise<CheckResult> {
  const name = 'pause image';
  try {
    const { image } = await probe.imageStatus(pauseImage);
    if (image === undefined)
      return { name, ok: false, evidence: `${pauseImage} is not in the image store`, fix: `crictl pull ${pauseImage}` };
    if (!image.pinned)
      return {
        name,
        ok: false,
        evidence: `${pauseImage} (${image.id}) is present but not pinned`,
        fix: 'restart icetray: it pins its configured pause image',
      };
    return { name, ok: true, evidence: `${pauseImage} is present (${image.id}) and pinned`, fix: '' };
  } catch (err) {
    return {
      name,
      ok: false,
      evidence: `ImageStatus of ${pauseImage} failed: ${messageOf(err)}`,
      fix: 'start icetray (its image service answers ImageStatus)',
    };
  }
}
