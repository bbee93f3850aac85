import { Image as CriImage, ImageSpec, ImageStatusResponse, type ImageStatusRequest } from '../generated/api.js';
import { ImageStore, type Image } from '../images/store.js';

/** The CRI form of an image, shared by ImageStatus and ListImages so both always say the same. */
export function toCriImage(image: Image): CriImage {
  const { uid, username } = ImageStore.userOf(image);
  return CriImage.create({
    id: image.id,
    repoTags: image.repoTags,
    repoDigests: image.repoDigests,
    size: image.size,
    ...(uid === undefined ? {} : { uid: { value: uid } }),
    username,
    spec: ImageSpec.create({ image: image.id }),
    pinned: image.pinned,
  });
}

/**
 * ImageStatus: the image a reference names (tag, digest, id). An unknown image is success with
 * `image` unset, not NOT_FOUND (api.proto: "If the image isn't present, returns a response with
 * ImageStatusResponse.Image set to nil"); the kubelet and critest pull when they see that.
 */
export function imageStatus(store: ImageStore, request: ImageStatusRequest): Promise<ImageStatusResponse> {
  const image = store.resolve(request.image?.image ?? '');
  if (image === undefined) return Promise.resolve(ImageStatusResponse.create({}));
  const info: Record<string, string> = {};
  if (request.verbose) {
    // crictl inspecti prints this; containerd puts the OCI config under "imageSpec" likewise.
    info['info'] = JSON.stringify({ id: image.id, manifestDigest: image.manifestDigest, imageSpec: image.config });
  }
  return Promise.resolve(ImageStatusResponse.create({ image: toCriImage(image), info }));
}
