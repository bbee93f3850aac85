import { nowNanos } from '../time.js';
import { FilesystemUsage, ImageFsInfoResponse, type ImageFsInfoRequest } from '../generated/api.js';
import type { ImageStore } from '../images/store.js';

/**
 * ImageFsInfo: how much the image store takes (blobs and unpacked layers). The kubelet's image
 * garbage collection acts on it, and every CRI client (crictl, critest) calls it when it
 * connects, so it answers from the first start on, even while the store is empty.
 */
export async function imageFsInfo(store: ImageStore, _request: ImageFsInfoRequest): Promise<ImageFsInfoResponse> {
  const usage = await store.usage();
  const filesystem = FilesystemUsage.create({
    timestamp: nowNanos(),
    fsId: { mountpoint: store.root },
    usedBytes: { value: usage.bytes },
    inodesUsed: { value: usage.inodes },
  });
  return ImageFsInfoResponse.create({ imageFilesystems: [filesystem], containerFilesystems: [] });
}
