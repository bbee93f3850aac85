import { RemoveImageResponse, type RemoveImageRequest } from '../generated/api.js';
import { InvalidArgumentError } from '../errors.js';
import type { ImageStore } from '../images/store.js';

/**
 * RemoveImage: the image and all its names. Removing an image that is not there succeeds
 * (api.proto: "This call is idempotent, and must not return an error if the image has already
 * been removed"); the pinned pause image and images under a container are refused.
 */
export async function removeImage(store: ImageStore, request: RemoveImageRequest): Promise<RemoveImageResponse> {
  const ref = request.image?.image ?? '';
  if (ref === '') throw new InvalidArgumentError('image.image is required');
  await store.remove(ref);
  return RemoveImageResponse.create({});
}
