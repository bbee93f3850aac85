import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VersionResponse, type VersionRequest } from '../generated/api.js';
import { PACKAGE_ROOT } from '../paths.js';

const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string };

/** The CRI API version icetray speaks. */
export const RUNTIME_API_VERSION = 'v1';
export const RUNTIME_NAME = 'icetray';
export const RUNTIME_VERSION: string = pkg.version;

/**
 * Version: who is answering. `version` is the version of the kubelet-runtime API, for which
 * the CRI keeps the old value "0.1.0"; clients reject a response with any field empty.
 */
export function version(_request: VersionRequest): Promise<VersionResponse> {
  return Promise.resolve(
    VersionResponse.create({
      version: '0.1.0',
      runtimeName: RUNTIME_NAME,
      runtimeVersion: RUNTIME_VERSION,
      runtimeApiVersion: RUNTIME_API_VERSION,
    }),
  );
}
