/* The device-filter mode of nsexec (device-filter.c), for cgroup v2 device allowlists. */
#ifndef ICETRAY_DEVICE_FILTER_H
#define ICETRAY_DEVICE_FILTER_H
int device_filter_main(int argc, char **argv);
#endif
