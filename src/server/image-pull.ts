import type { ServerUnaryCall } from '@grpc/grpc-js';
import { PullImageResponse, type PullImageRequest } from '../generated/api.js';
import { DeadlineExceededError, InvalidArgumentError, UnavailableError } from '../errors.js';
import type { ImageStore } from '../images/store.js';

/**
 * An AbortSignal that fires when the call's deadline passes (reason DeadlineExceeded) or the
 * client cancels, so a pull the kubelet gave up on stops downloading and leaves nothing behind.
 */
function callSignal(call: ServerUnaryCall<unknown, unknown>): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const deadline = call.getDeadline();
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(at)) {
    timer = setTimeout(
      () => controller.abort(new DeadlineExceededError('the pull did not finish before the call deadline')),
      Math.max(0, at - Date.now()),
    );
  }
  const onCancel = (): void => controller.abort(new UnavailableError('the client cancelled the pull'));
  call.once('cancelled', onCancel);
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      call.off('cancelled', onCancel);
    },
  };
}

/**
 * PullImage: fetch, verify and unpack an image; answers its id (the config digest), which is
 * what Image.id and ContainerStatus.image_id say too (api.proto, PullImageResponse.image_ref).
 */
export async function pullImage(
  store: ImageStore,
  request: PullImageRequest,
  call: ServerUnaryCall<PullImageRequest, PullImageResponse>,
): Promise<PullImageResponse> {
  const ref = request.image?.image ?? '';
  if (ref === '') throw new InvalidArgumentError('image.image is required');
  const { signal, done } = callSignal(call);
  try {
    const image = await store.pull(ref, request.auth, signal);
    return PullImageResponse.create({ imageRef: image.id });
  } finally {
    done();
  }
}
