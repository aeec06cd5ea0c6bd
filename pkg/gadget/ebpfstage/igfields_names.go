package ebpfstage

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idNames maps user and group ids to names from passwd and group files,
// found in the first of dirs that has them. The files are read on first
// use and again on a miss when they changed, at most once a second. Safe
// for concurrent use.
type idNames struct {
	dirs []string
	now  func() time.Time

	mu     sync.Mutex
	users  idFile // guarded by mu
	groups idFile // guarded by mu
}

// idFile is one parsed file and when it was read.
type idFile struct {
	names   map[uint32]string
	modTime time.Time
	checked time.Time
}

const idRereadInterval = time.Second

func newIDNames(dirs []string, now func() time.Time) *idNames {
	return &idNames{dirs: dirs, now: now}
}

// user returns the name of uid, or "".
func (n *idNames) user(uid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lookup(&n.users, "passwd", uid)
}

// group returns the name of gid, or "".
func (n *idNames) group(gid uint32) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lookup(&n.groups, "group", gid)
}

// lookup reads file on first use and on a miss when it changed; n.mu is
// held.
func (n *idNames) lookup(f *idFile, file string, id uint32) string {
	if name, ok := f.names[id]; ok {
		return name
	}
	now := n.now()
	if f.names != nil && now.Sub(f.checked) < idRereadInterval {
		return ""
	}
	f.checked = now
	var path string
	var st os.FileInfo
	for _, dir := range n.dirs {
		var err error
		path = filepath.Join(dir, file)
		if st, err = os.Stat(path); err == nil {
			break
		}
	}
	if st == nil {
		f.names = map[uint32]string{}
		return ""
	}
	if f.names != nil && st.ModTime().Equal(f.modTime) {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		f.names = map[uint32]string{}
		return ""
	}
	f.names, f.modTime = parseIDFile(b), st.ModTime()
	return f.names[id]
}

// parseIDFile reads passwd or group lines, name:x:id:..., keeping the
// first name of an id.
func parseIDFile(b []byte) map[uint32]string {
	out := map[uint32]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		parts := strings.SplitN(line, ":", 4)
		if len(parts) < 3 {
			continue
		}
		id, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil {
			continue
		}
		if _, dup := out[uint32(id)]; !dup {
			out[uint32(id)] = parts[0]
		}
	}
	return out
}
