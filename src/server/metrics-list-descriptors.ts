import { ListMetricDescriptorsResponse, type ListMetricDescriptorsRequest } from '../generated/api.js';
import { METRIC_DESCRIPTORS } from '../stats/metrics.js';

/**
 * ListMetricDescriptors: the cAdvisor-style metrics ListPodSandboxMetrics sends. The list is fixed
 * for the life of the process, as api.proto requires (the kubelet reads it once at start).
 */
export function listMetricDescriptors(_request: ListMetricDescriptorsRequest): Promise<ListMetricDescriptorsResponse> {
  return Promise.resolve(ListMetricDescriptorsResponse.create({ descriptors: [...METRIC_DESCRIPTORS] }));
}
