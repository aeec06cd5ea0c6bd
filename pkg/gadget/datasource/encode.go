package datasource

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"syscall"
	"time"
	"unicode/utf8"
)

// Clock converts boot-time nanoseconds (bpf_ktime_get_boot_ns) to wall
// clock time. The zero Clock prints timestamps as nanoseconds since boot.
type Clock struct {
	// BootTime is the wall-clock time of boot.
	BootTime time.Time
}

// Time returns the wall-clock time of a boot-time timestamp.
func (c Clock) Time(bootNS uint64) time.Time {
	return c.BootTime.Add(time.Duration(bootNS))
}

// AppendText appends the field's value in r as text: integers in decimal,
// strings as they are, enums and errnos by name, addresses dotted,
// timestamps in RFC 3339 when c has a boot time.
func (f *Field) AppendText(dst []byte, r *Record, c Clock) []byte {
	switch f.Kind {
	case KindString, KindStringList:
		return appendPrintable(dst, f.Str(r), f.Kind == KindStringList)
	case KindBytes:
		return appendHex(dst, f.Bytes(r))
	case KindBool:
		return strconv.AppendBool(dst, f.Uint(r) != 0)
	case KindEnum:
		v := f.Int(r)
		if n, ok := f.Enum[v]; ok {
			return append(dst, n...)
		}
		return strconv.AppendInt(dst, v, 10)
	case KindErrno:
		v := f.Int(r)
		e := -v
		if !f.Signed {
			e = v
		}
		if e > 0 {
			if n := ErrnoName(syscall.Errno(e)); n != "" {
				return append(dst, n...)
			}
		}
		return strconv.AppendInt(dst, v, 10)
	case KindIPv4:
		b := f.Bytes(r)
		for i := range 4 {
			if i > 0 {
				dst = append(dst, '.')
			}
			dst = strconv.AppendUint(dst, uint64(b[i]), 10)
		}
		return dst
	case KindL3Endpoint, KindL4Endpoint:
		return f.appendEndpoint(dst, f.Bytes(r))
	case KindSyscall:
		if n := SyscallName(f.Uint(r)); n != "" {
			return append(dst, n...)
		}
		return strconv.AppendUint(dst, f.Uint(r), 10)
	case KindSignal:
		if n := SignalName(f.Uint(r)); n != "" {
			return append(dst, n...)
		}
		return strconv.AppendUint(dst, f.Uint(r), 10)
	case KindTimestamp:
		if !c.BootTime.IsZero() {
			return c.Time(f.Uint(r)).UTC().AppendFormat(dst, time.RFC3339Nano)
		}
		return strconv.AppendUint(dst, f.Uint(r), 10)
	}
	if f.Signed {
		return strconv.AppendInt(dst, f.Int(r), 10)
	}
	return strconv.AppendUint(dst, f.Uint(r), 10)
}

// AppendJSON appends r as one JSON object (no newline) of its visible
// fields. Integers are numbers (errnos too: "ret":-2); everything else is a
// string as AppendText writes it.
func (ds *DataSource) AppendJSON(dst []byte, r *Record, c Clock) []byte {
	dst = append(dst, '{')
	first := true
	for _, f := range ds.fields {
		if f.Hidden {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, []byte(f.Name))
		dst = append(dst, ':')
		switch f.Kind {
		case KindBool:
			dst = strconv.AppendBool(dst, f.Uint(r) != 0)
		case KindErrno, KindInt8, KindInt16, KindInt32, KindInt64, KindKernelStack, KindUserStack:
			dst = strconv.AppendInt(dst, f.Int(r), 10)
		case KindUint8, KindUint16, KindUint32, KindUint64, KindUID, KindGID, KindMntNsID, KindPort:
			dst = strconv.AppendUint(dst, f.Uint(r), 10)
		case KindString, KindStringList:
			dst = appendJSONString(dst, f.Str(r))
		default:
			// AppendText output of the remaining kinds (hex, dotted
			// addresses, times, identifiers) never needs escaping.
			dst = append(dst, '"')
			dst = f.AppendText(dst, r, c)
			dst = append(dst, '"')
		}
	}
	return append(dst, '}')
}

// appendEndpoint writes an L3 endpoint's address, or an L4 endpoint's
// address and port: 10.0.0.1:80, [::1]:80. An unknown IP version shows
// the address bytes in hex.
func (f *Field) appendEndpoint(dst, b []byte) []byte {
	l := f.Endpoint
	if int(l.Version) >= len(b) || f.Kind == KindL4Endpoint && int(l.Port)+2 > len(b) || len(b) < 16 {
		return appendHex(dst, b)
	}
	var addr netip.Addr
	switch b[l.Version] {
	case 4:
		addr = netip.AddrFrom4([4]byte(b[:4]))
	case 6:
		addr = netip.AddrFrom16([16]byte(b[:16]))
	default:
		dst = append(dst, "unknown:"...)
		return appendHex(dst, b[:16])
	}
	if f.Kind != KindL4Endpoint {
		return addr.AppendTo(dst)
	}
	port := binary.NativeEndian.Uint16(b[l.Port : l.Port+2])
	return netip.AddrPortFrom(addr, port).AppendTo(dst)
}

const hexDigits = "0123456789abcdef"

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&0xf])
	}
	return dst
}

// appendPrintable appends b with NULs as spaces (string lists) and invalid
// UTF-8 replaced.
func appendPrintable(dst, b []byte, nulAsSpace bool) []byte {
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			if c == 0 && nulAsSpace {
				c = ' '
			}
			dst = append(dst, c)
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		dst = utf8.AppendRune(dst, r)
		b = b[n:]
	}
	return dst
}

// appendJSONString appends b as a JSON string; NULs inside (string lists)
// become spaces, invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst, b []byte) []byte {
	dst = append(dst, '"')
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			b = b[1:]
			switch {
			case c == 0:
				dst = append(dst, ' ')
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			continue
		}
		r, n := utf8.DecodeRune(b)
		dst = utf8.AppendRune(dst, r)
		b = b[n:]
	}
	return append(dst, '"')
}

// ErrnoName returns the symbolic name of e ("ENOENT") or "" when it has
// none in this table.
func ErrnoName(e syscall.Errno) string {
	if int(e) < len(errnoNames) {
		return errnoNames[e]
	}
	return ""
}

var errnoNames = [...]string{
	syscall.EPERM: "EPERM", syscall.ENOENT: "ENOENT", syscall.ESRCH: "ESRCH",
	syscall.EINTR: "EINTR", syscall.EIO: "EIO", syscall.ENXIO: "ENXIO",
	syscall.E2BIG: "E2BIG", syscall.ENOEXEC: "ENOEXEC", syscall.EBADF: "EBADF",
	syscall.ECHILD: "ECHILD", syscall.EAGAIN: "EAGAIN", syscall.ENOMEM: "ENOMEM",
	syscall.EACCES: "EACCES", syscall.EFAULT: "EFAULT", syscall.EBUSY: "EBUSY",
	syscall.EEXIST: "EEXIST", syscall.EXDEV: "EXDEV", syscall.ENODEV: "ENODEV",
	syscall.ENOTDIR: "ENOTDIR", syscall.EISDIR: "EISDIR", syscall.EINVAL: "EINVAL",
	syscall.ENFILE: "ENFILE", syscall.EMFILE: "EMFILE", syscall.ENOTTY: "ENOTTY",
	syscall.EFBIG: "EFBIG", syscall.ENOSPC: "ENOSPC", syscall.ESPIPE: "ESPIPE",
	syscall.EROFS: "EROFS", syscall.EMLINK: "EMLINK", syscall.EPIPE: "EPIPE",
	syscall.ENAMETOOLONG: "ENAMETOOLONG", syscall.ELOOP: "ELOOP",
	syscall.ECONNREFUSED: "ECONNREFUSED", syscall.ETIMEDOUT: "ETIMEDOUT",
	syscall.EADDRINUSE: "EADDRINUSE", syscall.ENETUNREACH: "ENETUNREACH",
	syscall.EHOSTUNREACH: "EHOSTUNREACH", syscall.EOPNOTSUPP: "EOPNOTSUPP",
}
