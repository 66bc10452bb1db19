/* workcell compat: see <selinux/android.h>. */
#pragma once
#include <stddef.h>
#include <sys/types.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef unsigned short security_class_t;
struct selabel_handle;
union selinux_callback {
    int (*func_log)(int type, const char *fmt, ...);
    int (*func_audit)(void *auditdata, security_class_t cls, char *msgbuf, size_t msgbufsize);
    int (*func_validate)(char **ctx);
    int (*func_setenforce)(int enforcing);
    int (*func_policyload)(int seqno);
};
#define SELINUX_CB_LOG 0
#define SELINUX_CB_AUDIT 1
int getcon(char **con);
int getpidcon(pid_t pid, char **con);
void freecon(char *con);
int selinux_check_access(const char *scon, const char *tcon, const char *tclass,
                         const char *perm, void *auditdata);
int selabel_lookup(struct selabel_handle *h, char **con, const char *key, int type);
void selabel_close(struct selabel_handle *h);
int selinux_status_open(int fallback);
int selinux_status_updated(void);
void selinux_set_callback(int type, union selinux_callback cb);
int selinux_log_callback(int type, const char *fmt, ...);
int selinux_vendor_log_callback(int type, const char *fmt, ...);
struct selabel_handle *selinux_android_service_context_handle(void);
struct selabel_handle *selinux_android_vendor_service_context_handle(void);
#ifdef __cplusplus
}
#endif
