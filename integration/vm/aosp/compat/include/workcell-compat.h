/* workcell compat: force-included (-include) into every AOSP C++ source.
 * Android 10's libbinder builds with clang and libc++ against bionic, where
 * these headers arrive transitively and SIZE_T_MAX exists; glibc and
 * libstdc++ need them spelled out. */
#pragma once
#ifdef __cplusplus
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#endif
#include <limits.h>
#include <stdint.h>
#include <string.h>
#ifndef __cplusplus
/* bionic's <sys/cdefs.h> spelling, used by service_manager.c */
#ifndef __unused
#define __unused __attribute__((__unused__))
#endif
#endif
#ifndef SIZE_T_MAX
#define SIZE_T_MAX SIZE_MAX
#endif
