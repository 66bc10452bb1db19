// workcell.interop: a tiny libbinder service for the interop proof
// (integration/vm/aosp_linux_test.go). It is built with Android 10's own
// libbinder (Debian's android-platform-frameworks-native source), so what it
// writes and expects on the wire is AOSP's, not ours.
//
//   interop_service [-d DEVICE] [-n NAME]       register NAME (default
//                                               workcell.interop) with the
//                                               context manager and serve
//   interop_service [-d DEVICE] [-n NAME] -c STR call NAME's ECHO through
//                                               libbinder's proxy (BpInterop)
//                                               and print the answer
//
// Interface "workcell.IInterop":
//   code 1 ECHO(String16 s)  -> int32 0 (no exception), String16 s
//   code 2 WHOAMI()          -> int32 0, int32 calling pid, int32 calling uid
// Both enforce the interface token, as AIDL stubs do.

#include <binder/Binder.h>
#include <binder/IBinder.h>
#include <binder/IInterface.h>
#include <binder/IPCThreadState.h>
#include <binder/IServiceManager.h>
#include <binder/Parcel.h>
#include <binder/ProcessState.h>
#include <utils/String16.h>
#include <utils/String8.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

namespace workcell {

using android::BBinder;
using android::BnInterface;
using android::BpInterface;
using android::IBinder;
using android::IInterface;
using android::IPCThreadState;
using android::Parcel;
using android::PERMISSION_DENIED;  // CHECK_INTERFACE names it unqualified
using android::sp;
using android::status_t;
using android::String16;
using android::String8;

class IInterop : public IInterface {
public:
    DECLARE_META_INTERFACE(Interop)
    enum {
        ECHO = IBinder::FIRST_CALL_TRANSACTION,  // 1
        WHOAMI,                                  // 2
    };
    virtual status_t echo(const String16& in, String16* out) = 0;
};

class BpInterop : public BpInterface<IInterop> {
public:
    explicit BpInterop(const sp<IBinder>& impl) : BpInterface<IInterop>(impl) {}
    status_t echo(const String16& in, String16* out) override {
        Parcel data, reply;
        data.writeInterfaceToken(IInterop::getInterfaceDescriptor());
        data.writeString16(in);
        status_t err = remote()->transact(ECHO, data, &reply);
        if (err != android::NO_ERROR) return err;
        int32_t ex = reply.readExceptionCode();
        if (ex != 0) return android::UNKNOWN_ERROR;
        return reply.readString16(out);
    }
};

IMPLEMENT_META_INTERFACE(Interop, "workcell.IInterop")

class BnInterop : public BnInterface<IInterop> {
public:
    status_t onTransact(uint32_t code, const Parcel& data, Parcel* reply,
                        uint32_t flags) override {
        switch (code) {
        case ECHO: {
            CHECK_INTERFACE(IInterop, data, reply);
            String16 in, out;
            status_t err = data.readString16(&in);
            if (err != android::NO_ERROR) return err;
            err = echo(in, &out);
            if (err != android::NO_ERROR) return err;
            reply->writeNoException();
            return reply->writeString16(out);
        }
        case WHOAMI: {
            CHECK_INTERFACE(IInterop, data, reply);
            IPCThreadState* self = IPCThreadState::self();
            reply->writeNoException();
            reply->writeInt32(self->getCallingPid());
            return reply->writeInt32(static_cast<int32_t>(self->getCallingUid()));
        }
        default:
            return BBinder::onTransact(code, data, reply, flags);
        }
    }
};

class Interop : public BnInterop {
public:
    status_t echo(const String16& in, String16* out) override {
        *out = in;
        fprintf(stderr, "interop_service: echo \"%s\" for pid %d\n", String8(in).string(),
                IPCThreadState::self()->getCallingPid());
        return android::NO_ERROR;
    }
};

}  // namespace workcell

int main(int argc, char** argv) {
    const char* device = "/dev/binder";
    const char* name = "workcell.interop";
    const char* call = nullptr;
    int opt;
    while ((opt = getopt(argc, argv, "d:n:c:")) != -1) {
        switch (opt) {
        case 'd': device = optarg; break;
        case 'n': name = optarg; break;
        case 'c': call = optarg; break;
        default:
            fprintf(stderr, "usage: %s [-d DEVICE] [-n NAME] [-c STRING]\n", argv[0]);
            return 2;
        }
    }
    android::ProcessState::initWithDriver(device);
    android::sp<android::IServiceManager> sm = android::defaultServiceManager();
    if (sm == nullptr) {
        fprintf(stderr, "interop_service: no service manager on %s\n", device);
        return 1;
    }
    if (call != nullptr) {
        android::sp<android::IBinder> b = sm->checkService(android::String16(name));
        if (b == nullptr) {
            fprintf(stderr, "interop_service: %s not found\n", name);
            return 1;
        }
        android::sp<workcell::IInterop> svc = android::interface_cast<workcell::IInterop>(b);
        android::String16 out;
        android::status_t err = svc->echo(android::String16(call), &out);
        if (err != android::NO_ERROR) {
            fprintf(stderr, "interop_service: echo failed: %d\n", err);
            return 1;
        }
        printf("interop_service: %s echoed \"%s\"\n", name, android::String8(out).string());
        return 0;
    }
    android::sp<workcell::Interop> svc = new workcell::Interop();
    android::status_t err = sm->addService(android::String16(name), svc);
    if (err != android::NO_ERROR) {
        fprintf(stderr, "interop_service: addService(%s) on %s failed: %d\n", name, device, err);
        return 1;
    }
    fprintf(stderr, "interop_service: %s registered on %s, serving\n", name, device);
    android::ProcessState::self()->startThreadPool();
    android::IPCThreadState::self()->joinThreadPool();
    return 0;
}
