package datasource

import (
	"encoding/binary"
	"fmt"
)

// Kind is how a field's bytes are interpreted.
type Kind uint8

// The kinds of field. Integer kinds are native-endian; KindString is a
// NUL-terminated char array; KindStringList is a char array holding
// NUL-separated strings (argv), shown joined by spaces.
const (
	KindInvalid Kind = iota
	KindInt8
	KindInt16
	KindInt32
	KindInt64
	KindUint8
	KindUint16
	KindUint32
	KindUint64
	KindBool
	KindString
	KindStringList
	KindBytes
	// KindEnum is a signed or unsigned integer of 1 to 8 bytes shown by the
	// name of its value (Field.Enum).
	KindEnum
	// KindTimestamp is a uint64 of nanoseconds since boot.
	KindTimestamp
	// KindErrno is a syscall's error: when the field is Signed (as
	// AddFieldAt makes it), a return value that is -errno on failure
	// (gadgetpm's gadget_errno); when Signed is cleared on the added field,
	// a positive errno number (Inspektor Gadget's gadget_errno).
	KindErrno
	KindUID
	KindGID
	// KindMntNsID is a uint64 mount namespace inode number.
	KindMntNsID
	// KindIPv4 is a uint32 address in network byte order.
	KindIPv4
	// KindPort is a uint16 port in host byte order.
	KindPort
	// KindL3Endpoint is Inspektor Gadget's struct gadget_l3endpoint_t: a
	// 16-byte address at its start (IPv4 in the first 4 bytes, network
	// byte order) and the IP version (4 or 6) at Field.Endpoint.Version.
	KindL3Endpoint
	// KindL4Endpoint is Inspektor Gadget's struct gadget_l4endpoint_t: an
	// address and version as KindL3Endpoint, and a uint16 port in host
	// byte order at Field.Endpoint.Port.
	KindL4Endpoint
	// KindSyscall is a syscall number of the running architecture, shown
	// by name.
	KindSyscall
	// KindSignal is a signal number, shown by name (SIGKILL).
	KindSignal
	// KindKernelStack is a stack id into the object's kernel stack map
	// (BPF_MAP_TYPE_STACK_TRACE); the eBPF stage shows its symbols in a
	// string field beside it.
	KindKernelStack
	// KindUserStack is a stack id into the object's user stack map; the
	// eBPF stage shows its addresses in a string field beside it.
	KindUserStack
)

var kindNames = [...]string{
	KindInvalid:     "invalid",
	KindInt8:        "int8",
	KindInt16:       "int16",
	KindInt32:       "int32",
	KindInt64:       "int64",
	KindUint8:       "uint8",
	KindUint16:      "uint16",
	KindUint32:      "uint32",
	KindUint64:      "uint64",
	KindBool:        "bool",
	KindString:      "string",
	KindStringList:  "stringlist",
	KindBytes:       "bytes",
	KindEnum:        "enum",
	KindTimestamp:   "timestamp",
	KindErrno:       "errno",
	KindUID:         "uid",
	KindGID:         "gid",
	KindMntNsID:     "mntns_id",
	KindIPv4:        "ipv4",
	KindPort:        "port",
	KindL3Endpoint:  "l3endpoint",
	KindL4Endpoint:  "l4endpoint",
	KindSyscall:     "syscall",
	KindSignal:      "signal",
	KindKernelStack: "kernel_stack",
	KindUserStack:   "user_stack",
}

// String returns the kind's name as used in gadget.yaml and catalogs.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// ParseKind returns the kind named s (as printed by Kind.String).
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if n == s && Kind(k) != KindInvalid {
			return Kind(k), nil
		}
	}
	return KindInvalid, fmt.Errorf("unknown field kind %q (expected one of int8..int64, uint8..uint64, bool, string, stringlist, bytes, enum, timestamp, errno, uid, gid, mntns_id, ipv4, port, l3endpoint, l4endpoint, syscall, signal, kernel_stack, user_stack)", s)
}

// fixedSize returns the size a kind requires, or 0 when any size is allowed.
func (k Kind) fixedSize() uint32 {
	switch k {
	case KindInt8, KindUint8, KindBool:
		return 1
	case KindInt16, KindUint16, KindPort:
		return 2
	case KindInt32, KindUint32, KindUID, KindGID, KindIPv4, KindSignal, KindKernelStack, KindUserStack:
		return 4
	case KindInt64, KindUint64, KindTimestamp, KindMntNsID:
		return 8
	}
	return 0
}

// Signed reports whether integers of this kind are signed.
func (k Kind) signed() bool {
	switch k {
	case KindInt8, KindInt16, KindInt32, KindInt64, KindErrno:
		return true
	}
	return false
}

// Integer reports whether the kind is read with Field.Int or Field.Uint.
func (k Kind) Integer() bool {
	switch k {
	case KindString, KindStringList, KindBytes, KindInvalid, KindL3Endpoint, KindL4Endpoint:
		return false
	}
	return true
}

// Field is one typed field of a data source's records. Its layout (Offset,
// Size, Kind) is fixed once the data source runs; Description and
// Annotations are informational.
type Field struct {
	// Name is unique within its data source.
	Name string
	// Kind says how to read the bytes.
	Kind Kind
	// Offset and Size locate the field in a record.
	Offset, Size uint32
	// Signed applies to KindEnum and KindErrno: the integer is signed
	// (for KindErrno: it holds -errno, not errno).
	Signed bool
	// Enum maps values to names for KindEnum.
	Enum map[int64]string
	// Description for catalogs and --help.
	Description string
	// Hidden fields are decoded but not printed (e.g. a length field).
	Hidden bool
	// Raw marks the raw value of a field shown formatted under another
	// name (Inspektor Gadget's `<name>_raw` convention: `timestamp_raw`
	// beside `timestamp`): it is left out of `-o columns`; JSON and
	// catalogs keep it.
	Raw bool
	// Endpoint locates the members of a KindL3Endpoint or KindL4Endpoint
	// field (the struct's layout changed between versions of Inspektor
	// Gadget's header; the eBPF stage reads it from BTF).
	Endpoint EndpointLayout
	// Columns is how `-o columns` lays the field out.
	Columns Columns
	// Annotations are free-form key/values from gadget.yaml.
	Annotations map[string]string
}

// EndpointLayout is where an endpoint struct's members are, in bytes from
// its start; the address is always at 0 and 16 bytes long.
type EndpointLayout struct {
	// Version is the offset of the uint8 IP version (4 or 6).
	Version uint32
	// Port is the offset of the uint16 port (KindL4Endpoint only).
	Port uint32
}

// Bytes returns the field's bytes in r, aliasing r's buffer.
func (f *Field) Bytes(r *Record) []byte {
	return r.buf[f.Offset : f.Offset+f.Size]
}

// Uint returns an integer field's value zero-extended.
func (f *Field) Uint(r *Record) uint64 {
	b := r.buf[f.Offset : f.Offset+f.Size]
	switch f.Size {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.NativeEndian.Uint16(b))
	case 4:
		return uint64(binary.NativeEndian.Uint32(b))
	case 8:
		return binary.NativeEndian.Uint64(b)
	}
	return 0
}

// Int returns an integer field's value, sign-extended when the field is
// signed.
func (f *Field) Int(r *Record) int64 {
	u := f.Uint(r)
	if !f.Signed {
		return int64(u)
	}
	switch f.Size {
	case 1:
		return int64(int8(u))
	case 2:
		return int64(int16(u))
	case 4:
		return int64(int32(u))
	}
	return int64(u)
}

// Str returns a string field's bytes up to the first NUL, aliasing r's
// buffer. For KindStringList it returns the bytes up to the last non-NUL.
func (f *Field) Str(r *Record) []byte {
	b := f.Bytes(r)
	if f.Kind == KindStringList {
		n := len(b)
		for n > 0 && b[n-1] == 0 {
			n--
		}
		return b[:n]
	}
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// SetUint stores v in an integer field.
func (f *Field) SetUint(r *Record, v uint64) {
	b := r.buf[f.Offset : f.Offset+f.Size]
	switch f.Size {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.NativeEndian.PutUint16(b, uint16(v))
	case 4:
		binary.NativeEndian.PutUint32(b, uint32(v))
	case 8:
		binary.NativeEndian.PutUint64(b, v)
	}
}

// SetString stores s in a string field, truncated to Size-1 bytes and
// NUL-padded.
func (f *Field) SetString(r *Record, s string) {
	b := f.Bytes(r)
	n := copy(b[:len(b)-1], s)
	clear(b[n:])
}
