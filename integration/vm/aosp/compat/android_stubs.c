/* workcell compat: symbols that Android 10's libbinder and servicemanager
 * call but Debian's android-libcutils/liblog (built for host tools) do not
 * export. The guest has no property service, no event log and no
 * libprocessgroup. */
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

/* <cutils/properties.h>: no property service; hand back the default. */
int property_get(const char *key, char *value, const char *default_value) {
    (void)key;
    size_t n = 0;
    if (default_value) {
        n = strlen(default_value);
        if (n > 91) n = 91;
        memcpy(value, default_value, n);
    }
    value[n] = '\0';
    return (int)n;
}

/* <log/log_event_list.h>: the security event log (SafetyNet). */
int __android_log_error_write(int tag, const char *subTag, int32_t uid, const char *data,
                              uint32_t dataLen) {
    (void)tag; (void)subTag; (void)uid; (void)data; (void)dataLen;
    return 0;
}

/* <processgroup/sched_policy.h>: scheduling groups are not managed here. */
int set_sched_policy(int tid, int policy) { (void)tid; (void)policy; return 0; }
int get_sched_policy(int tid, int *policy) { (void)tid; *policy = 1; return 0; }
