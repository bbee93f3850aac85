import { describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../errors.js';
import { cgroupfsContainerPath, cgroupfsPodPath, expandSlice, systemdContainerPath, systemdPodPath } from './names.js';

describe('kubelet cgroup names', () => {
  it('gives a pod without cgroup_parent the kubelet burstable layout, per driver', () => {
    expect(cgroupfsPodPath('ab-12', '')).toBe('/kubepods/burstable/podab-12');
    expect(systemdPodPath('ab-12', '')).toBe('/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podab_12.slice');
  });

  it('honours the cgroup_parent the kubelet passes, in either spelling for systemd', () => {
    expect(cgroupfsPodPath('u', '/kubepods/besteffort/podu/')).toBe('/kubepods/besteffort/podu');
    expect(systemdPodPath('u', 'kubepods-besteffort-podu.slice')).toBe(
      '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu.slice',
    );
    expect(systemdPodPath('u', '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu.slice')).toBe(
      '/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu.slice',
    );
    expect(systemdPodPath('u', '/test.slice')).toBe('/test.slice');
  });

  it.each([
    ['cgroupfs', () => cgroupfsPodPath('u', '/kubepods.slice/kubepods-burstable-podu.slice'), /is a systemd slice/],
    ['systemd', () => systemdPodPath('u', '/kubepods/burstable/podu'), /is not a systemd slice/],
  ])('refuses a cgroup_parent of the other driver under %s (InvalidArgument)', (_driver, make, message) => {
    expect(make).toThrow(InvalidArgumentError);
    expect(make).toThrow(message);
  });

  it('names containers by id inside the pod, as a directory or an icetray-<id>.scope', () => {
    expect(cgroupfsContainerPath('/kubepods/burstable/podu', 'abc')).toBe('/kubepods/burstable/podu/abc');
    expect(systemdContainerPath('/test.slice', 'abc')).toBe('/test.slice/icetray-abc.scope');
  });

  it('refuses names that would leave the hierarchy', () => {
    expect(() => cgroupfsPodPath('u', '/../etc')).toThrow(InvalidArgumentError);
    expect(() => cgroupfsContainerPath('/p', '../x')).toThrow(InvalidArgumentError);
    expect(() => cgroupfsPodPath('../x', '')).toThrow(InvalidArgumentError);
  });

  it.each([
    ['-.slice', '/'],
    ['a.slice', '/a.slice'],
    ['a-b-c.slice', '/a.slice/a-b.slice/a-b-c.slice'],
  ])('expands slice %s to %s', (slice, path) => {
    expect(expandSlice(slice)).toBe(path);
  });

  it.each(['a--b.slice', '-a.slice', 'a-.slice', 'a.scope', 'a/b.slice'])('refuses the slice name %s', (slice) => {
    expect(() => expandSlice(slice)).toThrow(InvalidArgumentError);
  });
});
