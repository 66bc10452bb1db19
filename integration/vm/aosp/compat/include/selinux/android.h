/* workcell compat: the parts of Android's libselinux that Android 10's C
 * servicemanager (cmds/servicemanager/service_manager.c) uses. The guest
 * has no SELinux policy: selinux_stub.c answers like a permissive device
 * (every check allowed, one fixed context for everybody), so the service
 * manager's own protocol is what the interop test exercises. */
#pragma once
#include <selinux/avc.h>
