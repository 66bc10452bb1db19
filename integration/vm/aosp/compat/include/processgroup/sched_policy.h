/* workcell compat: libprocessgroup's <processgroup/sched_policy.h>, which
 * Debian does not ship; libbinder includes it through
 * <cutils/sched_policy.h> but only uses the names below. */
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
typedef enum {
    SP_DEFAULT = -1,
    SP_BACKGROUND = 0,
    SP_FOREGROUND = 1,
    SP_SYSTEM = 2,
    SP_AUDIO_APP = 3,
    SP_AUDIO_SYS = 4,
    SP_TOP_APP = 5,
    SP_RT_APP = 6,
    SP_RESTRICTED = 7,
    SP_CNT,
    SP_MAX = SP_CNT - 1,
    SP_SYSTEM_DEFAULT = SP_FOREGROUND,
} SchedPolicy;
#ifdef __cplusplus
}
#endif
