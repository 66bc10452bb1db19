/* workcell compat: a permissive stand-in for Android's libselinux, see
 * include/selinux/android.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <selinux/android.h>

static const char kContext[] = "u:r:workcell_interop:s0";
static struct selabel_handle *const kHandle = (struct selabel_handle *)&kContext;

int getcon(char **con) { *con = strdup(kContext); return *con ? 0 : -1; }
int getpidcon(pid_t pid, char **con) { (void)pid; return getcon(con); }
void freecon(char *con) { free(con); }
int selinux_check_access(const char *scon, const char *tcon, const char *tclass,
                         const char *perm, void *auditdata) {
    (void)scon; (void)tcon; (void)tclass; (void)perm; (void)auditdata;
    return 0;
}
int selabel_lookup(struct selabel_handle *h, char **con, const char *key, int type) {
    (void)h; (void)key; (void)type;
    return getcon(con);
}
void selabel_close(struct selabel_handle *h) { (void)h; }
int selinux_status_open(int fallback) { (void)fallback; return 0; }
int selinux_status_updated(void) { return 0; }
void selinux_set_callback(int type, union selinux_callback cb) { (void)type; (void)cb; }
int selinux_log_callback(int type, const char *fmt, ...) {
    va_list ap;
    (void)type;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    return 0;
}
int selinux_vendor_log_callback(int type, const char *fmt, ...) {
    va_list ap;
    (void)type;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    return 0;
}
struct selabel_handle *selinux_android_service_context_handle(void) { return kHandle; }
struct selabel_handle *selinux_android_vendor_service_context_handle(void) { return kHandle; }
