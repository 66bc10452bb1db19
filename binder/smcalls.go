package binder

// Dump priorities of addService and listServices (DUMP_FLAG_PRIORITY_* in
// IServiceManager.aidl, lineage-18.1 to 21.0, and IServiceManager.h of
// Android 10).
const (
	DumpPriorityCritical int32 = 1 << 0
	DumpPriorityHigh     int32 = 1 << 1
	DumpPriorityNormal   int32 = 1 << 2
	DumpPriorityDefault  int32 = 1 << 3
	DumpPriorityAll            = DumpPriorityCritical | DumpPriorityHigh | DumpPriorityNormal | DumpPriorityDefault
)

// The calls a client makes on the service manager (handle 0), built the
// way each release's libbinder builds them: the interface token of
// ServiceManagerDescriptor, then the arguments in order. Android 10's
// BpServiceManager (IServiceManager.cpp) writes them by hand for the C
// service_manager.c; from Android 11 on the AIDL-generated
// BpServiceManager writes the same layout (a @utf8InCpp String as
// String16, an IBinder as a strong binder with its stability word, a
// boolean as an int32). Only the codes differ (Release.ServiceManager).
// The Linux clients (smclient_linux.go) send these; the tests pin their
// bytes per release.

// getServiceCall is getService(name).
func getServiceCall(rel Release, name string) (uint32, *Parcel) {
	p := NewParcel(rel)
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	p.WriteString16(name)
	return rel.ServiceManager().GetService, p
}

// checkServiceCall is checkService(name).
func checkServiceCall(rel Release, name string) (uint32, *Parcel) {
	p := NewParcel(rel)
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	p.WriteString16(name)
	return rel.ServiceManager().CheckService, p
}

// addServiceCall is addService(name, service, allowIsolated, dumpPriority);
// writeService appends the service's binder (Node.WriteTo).
func addServiceCall(rel Release, name string, writeService func(*Parcel), allowIsolated bool, dumpPriority int32) (uint32, *Parcel) {
	p := NewParcel(rel)
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	p.WriteString16(name)
	writeService(p)
	p.WriteBool(allowIsolated)
	p.WriteInt32(dumpPriority)
	return rel.ServiceManager().AddService, p
}

// listServicesCall is listServices(dumpPriority). Android 10's C service
// manager answers one name per call: index is the name's position, written
// before the priority; later releases take no index and answer the whole
// list (index is ignored).
func listServicesCall(rel Release, index, dumpPriority int32) (uint32, *Parcel) {
	p := NewParcel(rel)
	p.WriteInterfaceToken(ServiceManagerDescriptor)
	if rel == Android10 {
		p.WriteInt32(index)
	}
	p.WriteInt32(dumpPriority)
	return rel.ServiceManager().ListServices, p
}
