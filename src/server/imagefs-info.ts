import { FilesystemUsage, ImageFsInfoResponse, type ImageFsInfoRequest } from '../generated/api.js';
import { directoryUsage, imageStoreDir } from '../images/usage.js';
import type { Runtime } from './runtime.js';

/**
 * ImageFsInfo: how much the image store takes. The kubelet's image garbage collection acts on
 * it, and every CRI client (crictl, critest) calls it when it connects, so it answers from the
 * first start on, measuring the store folder even while it is empty.
 */
export async function imageFsInfo(runtime: Runtime, _request: ImageFsInfoRequest): Promise<ImageFsInfoResponse> {
  const mountpoint = imageStoreDir(runtime.loaded.config.rootDir);
  const usage = await directoryUsage(mountpoint);
  const now = BigInt(Date.now()) * 1_000_000n;
  const filesystem = FilesystemUsage.create({
    timestamp: now,
    fsId: { mountpoint },
    usedBytes: { value: usage.bytes },
    inodesUsed: { value: usage.inodes },
  });
  return ImageFsInfoResponse.create({ imageFilesystems: [filesystem], containerFilesystems: [] });
}
