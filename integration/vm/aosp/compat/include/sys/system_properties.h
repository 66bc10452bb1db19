/* workcell compat: bionic's <sys/system_properties.h> for a glibc build of
 * AOSP's libbinder. Only the sizes libcutils' <cutils/properties.h> needs. */
#pragma once
#define PROP_NAME_MAX 32
#define PROP_VALUE_MAX 92
