import { ListImagesResponse, type ListImagesRequest } from '../generated/api.js';
import type { ImageStore } from '../images/store.js';
import { toCriImage } from './image-status.js';

/** ListImages: every image, or only the one `filter.image.image` names (as containerd filters). */
export function listImages(store: ImageStore, request: ListImagesRequest): Promise<ListImagesResponse> {
  const images = store.list(request.filter?.image?.image);
  return Promise.resolve(ListImagesResponse.create({ images: images.map(toCriImage) }));
}
