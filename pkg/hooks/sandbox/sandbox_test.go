package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// helperEnv makes the test binary a helper that calls New with both modes
// and prints what it got, as JSON (see unprivilegedNew).
const helperEnv = "GADGETPM_SANDBOX_TEST_HELPER"

type helperOut struct {
	OnErr     string
	OnNil     bool
	AutoErr   string
	AutoNil   bool
	AutoWarns []string
}

func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(unprivilegedNew())
	}
	os.Exit(m.Run())
}

func unprivilegedNew() int {
	var out helperOut
	sb, err := New(context.Background(), Options{Mode: On})
	out.OnNil = sb == nil
	if err != nil {
		out.OnErr = err.Error()
	}
	log := funcr.New(func(prefix, args string) { out.AutoWarns = append(out.AutoWarns, args) }, funcr.Options{})
	sb, err = New(context.Background(), Options{Mode: Auto, Logger: log})
	out.AutoNil = sb == nil
	if err != nil {
		out.AutoErr = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		return 1
	}
	return 0
}

func TestUserSet(t *testing.T) {
	tests := []struct {
		in      string
		want    User
		wantErr string
	}{
		{in: "65534:65534", want: User{UID: 65534, GID: 65534}},
		{in: "1000:2000", want: User{UID: 1000, GID: 2000}},
		{in: "1000", wantErr: `hook user "1000": want UID:GID`},
		{in: "nobody:nogroup", wantErr: `uid "nobody" is not a number`},
		{in: "1000:-1", wantErr: `gid "-1" is not a number`},
		{in: "0:0", wantErr: "hook user 0:0: sandboxed hooks run as a non-root user and group"},
		{in: "1000:0", wantErr: "hook user 1000:0: sandboxed hooks run as a non-root user and group"},
	}
	for _, tt := range tests {
		var u User
		err := u.Set(tt.in)
		switch {
		case tt.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Set(%q) = %v, want an error with %q", tt.in, err, tt.wantErr)
			}
		case err != nil || u != tt.want:
			t.Errorf("Set(%q) = %v, %v; want %v", tt.in, u, err, tt.want)
		}
	}
}

func TestModeSet(t *testing.T) {
	for _, in := range []string{"on", "off", "auto"} {
		var m Mode
		if err := m.Set(in); err != nil || string(m) != in {
			t.Errorf("Set(%q) = %q, %v", in, m, err)
		}
	}
	var m Mode
	if err := m.Set("yes"); err == nil || !strings.Contains(err.Error(), `hook sandbox mode "yes": want on, off or auto`) {
		t.Errorf("Set(yes) = %v", err)
	}
}

func TestNewRefusesRootAsTheHookUser(t *testing.T) {
	for _, u := range []User{{UID: 0, GID: 100}, {UID: 100, GID: 0}} {
		_, err := New(context.Background(), Options{Mode: On, User: u})
		if err == nil || !strings.Contains(err.Error(), "run as a non-root user and group") {
			t.Errorf("New with user %s = %v, want a refusal", u.String(), err)
		}
	}
}

// TestNewWithoutPrivileges runs New in a process without root's
// capabilities: On must refuse, naming what is missing and what to do;
// Auto must fall back with one warning.
func TestNewWithoutPrivileges(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("starting a process as another user needs root")
	}
	// The helper is this test binary, where the unprivileged user can run
	// it.
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sandbox.test")
	copyFile(t, self, bin)
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = []string{helperEnv + "=1", "PATH=/usr/bin:/bin"}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, raw)
	}
	var out helperOut
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("helper output %q: %v", raw, err)
	}
	for _, want := range []string{"hook sandbox: create a PID and mount namespace", "CAP_SYS_ADMIN", "seccomp", "auto or off"} {
		if !strings.Contains(out.OnErr, want) {
			t.Errorf("mode on: error %q lacks %q", out.OnErr, want)
		}
	}
	if !out.OnNil || !out.AutoNil || out.AutoErr != "" {
		t.Errorf("got %+v, want no sandbox for either mode and no error for auto", out)
	}
	if len(out.AutoWarns) != 1 || !strings.Contains(out.AutoWarns[0], "hook sandbox unavailable") || !strings.Contains(out.AutoWarns[0], "CAP_SYS_ADMIN") {
		t.Errorf("mode auto logged %q, want one warning naming the missing privilege", out.AutoWarns)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(fmt.Errorf("copy %s: %w", from, err))
	}
}
