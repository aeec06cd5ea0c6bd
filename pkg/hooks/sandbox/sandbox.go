package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
)

// Mode says whether hooks run sandboxed.
type Mode string

// Modes of Options.Mode.
const (
	// On runs every hook sandboxed; New fails when that is impossible.
	On Mode = "on"
	// Off runs hooks as the operator's user, without namespaces (they
	// still die with the operator).
	Off Mode = "off"
	// Auto is On when the sandbox can be made here, else Off with one
	// warning in the log.
	Auto Mode = "auto"
)

// Set parses "on", "off" or "auto"; with String and Type, *Mode is a
// command-line flag value.
func (m *Mode) Set(s string) error {
	switch Mode(s) {
	case On, Off, Auto:
		*m = Mode(s)
		return nil
	}
	return fmt.Errorf("hook sandbox mode %q: want on, off or auto", s)
}

func (m *Mode) String() string { return string(*m) }

// Type names the flag's value in --help.
func (m *Mode) Type() string { return "on|off|auto" }

// DefaultUser is the user and group hooks run as: nobody:nogroup,
// 65534:65534.
func DefaultUser() User { return User{UID: 65534, GID: 65534} }

// User is the uid and gid a sandboxed hook runs as, with no supplementary
// groups. The zero value means DefaultUser(): hooks never run as root in a
// sandbox.
type User struct {
	UID, GID uint32
}

// Set parses "UID:GID" (numbers, not root); with String and Type, *User
// is a command-line flag value.
func (u *User) Set(s string) error {
	uid, gid, ok := strings.Cut(s, ":")
	if !ok {
		return fmt.Errorf("hook user %q: want UID:GID, two numbers (default 65534:65534)", s)
	}
	parse := func(what, v string) (uint32, error) {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("hook user %q: %s %q is not a number: want UID:GID", s, what, v)
		}
		return uint32(n), nil
	}
	var err error
	if u.UID, err = parse("uid", uid); err != nil {
		return err
	}
	if u.GID, err = parse("gid", gid); err != nil {
		return err
	}
	return u.checkNotRoot()
}

func (u User) checkNotRoot() error {
	if u.UID == 0 || u.GID == 0 {
		return fmt.Errorf("hook user %s: sandboxed hooks run as a non-root user and group; pick another UID:GID, or turn the hook sandbox off to run hooks as the operator's user", u.String())
	}
	return nil
}

func (u User) String() string { return fmt.Sprintf("%d:%d", u.UID, u.GID) }

// Type names the flag's value in --help.
func (u *User) Type() string { return "UID:GID" }

// Options configure New.
type Options struct {
	// Mode; default (empty) Off.
	Mode Mode
	// User hooks run as; default DefaultUser(). Root (uid 0 or gid 0) is
	// refused.
	User User
	// Hide lists paths hooks must not see (the operator's data directory,
	// the debug socket's directory): each is covered by an empty
	// read-only tmpfs, except the hook's own package and run directory
	// below it. The service-account directories (SecretPaths()) are always
	// hidden.
	Hide []string
	// Logger gets the warning of Mode Auto when the sandbox cannot be
	// made; default none.
	Logger logr.Logger
}

// SecretPaths are where a pod's service-account token (and other
// projected secrets) are mounted; every sandbox hides them.
func SecretPaths() []string { return []string{"/var/run/secrets", "/run/secrets"} }

// Sandbox runs commands in the hook sandbox. A nil *Sandbox runs them
// without one (Mode Off). It is safe for concurrent use.
type Sandbox struct {
	user User
	hide []string
}

// New returns the sandbox of opts: nil for Off; for On and Auto it first
// starts the sandbox once with no command, so a missing privilege shows at
// start. On returns that error (naming the privilege and what to do); Auto
// logs it as a warning and returns nil, so hooks run as they would with
// Off.
func New(ctx context.Context, opts Options) (*Sandbox, error) {
	switch opts.Mode {
	case "", Off:
		return nil, nil
	case On, Auto:
	default:
		return nil, fmt.Errorf("hook sandbox mode %q: want on, off or auto", opts.Mode)
	}
	if opts.User == (User{}) {
		opts.User = DefaultUser()
	}
	if err := opts.User.checkNotRoot(); err != nil {
		return nil, err
	}
	hide, err := absPaths(append(SecretPaths(), opts.Hide...))
	if err != nil {
		return nil, err
	}
	s := &Sandbox{user: opts.User, hide: hide}
	err = s.probe(ctx)
	if err == nil {
		return s, nil
	}
	if opts.Mode == On {
		return nil, err
	}
	opts.Logger.Info("hook sandbox unavailable: hooks run as the operator's user, without their own PID and mount namespaces, and can read what the operator can", "reason", err.Error())
	return nil, nil
}

// absPaths makes paths to hide absolute, as the init sees them (it runs in
// /), leaving out empty ones.
func absPaths(paths []string) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("hook sandbox: hide %s: %w", p, err)
		}
		out = append(out, abs)
	}
	return out, nil
}

// probe runs the init with no command: namespaces, mounts, no_new_privs and
// the switch to the hook user, nothing else.
func (s *Sandbox) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "gadgetpm-sandbox-probe-")
	if err != nil {
		return fmt.Errorf("hook sandbox: check: %w", err)
	}
	defer os.RemoveAll(dir)
	var stderr bytes.Buffer
	cmd := s.command(ctx, initSpec{Probe: true, request: request{Dir: "/", RunDir: dir}}, io.Discard, &stderr)
	err = Run(cmd)
	var start *StartError
	switch {
	case errors.As(err, &start):
		return fmt.Errorf("hook sandbox: create a PID and mount namespace: %w: the operator needs CAP_SYS_ADMIN (and, in a container, a seccomp profile that allows clone and unshare with namespace flags; RuntimeDefault does not without CAP_SYS_ADMIN); grant it, or set the hook sandbox to auto or off to run hooks without it", start.Err)
	case err != nil:
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "no output"
		}
		return fmt.Errorf("hook sandbox: check: %v: %s", err, msg)
	}
	return nil
}

// Cmd is one command to run in the sandbox.
type Cmd struct {
	// Path of the executable and Args after argv[0].
	Path string
	Args []string
	// Dir is the working directory; Env the whole environment.
	Dir string
	Env []string
	// Stdout and Stderr receive the command's output.
	Stdout, Stderr io.Writer
	// Package is the hook's package directory: readable, never writable,
	// also when a hidden path holds it.
	Package string
	// RunDir is the run's own directory: the one place the hook may
	// write. It must be owned by the hook user (Own).
	RunDir string
	// Hide adds paths to hide for this command (see Options.Hide).
	Hide []string
	// WaitDelay bounds how long Wait waits for the output pipes after the
	// process exited (see exec.Cmd.WaitDelay).
	WaitDelay time.Duration
}

func (c Cmd) request() request {
	return request{Path: c.Path, Args: c.Args, Dir: c.Dir, Env: c.Env, Package: c.Package, RunDir: c.RunDir, Hide: c.Hide}
}

// Command returns the exec.Cmd of c; start it with Run, which keeps the
// parent-death signal right. Cancelling ctx kills the command and, in a
// sandbox, everything it started. Without a sandbox (s nil) the command
// runs as today: the operator's user, its own process group.
func (s *Sandbox) Command(ctx context.Context, c Cmd) *exec.Cmd {
	if s == nil {
		cmd := exec.CommandContext(ctx, c.Path, c.Args...)
		cmd.Dir, cmd.Env = c.Dir, c.Env
		cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = c.WaitDelay
		return cmd
	}
	cmd := s.command(ctx, initSpec{request: c.request()}, c.Stdout, c.Stderr)
	cmd.WaitDelay = c.WaitDelay
	return cmd
}

func (s *Sandbox) command(ctx context.Context, spec initSpec, stdout, stderr io.Writer) *exec.Cmd {
	spec.UID, spec.GID = s.user.UID, s.user.GID
	spec.Hide = append(append([]string(nil), s.hide...), spec.Hide...)
	raw, _ := json.Marshal(spec) // strings and numbers only: cannot fail
	// /proc/self/exe is resolved by the forked child: the operator's own
	// binary, even if the file was replaced since.
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{InitName}
	cmd.Env = []string{envSpec + "=" + string(raw)}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS,
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	// SIGKILL of the init (PID 1 of the namespace) makes the kernel kill
	// everything else in it.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// Own gives path and everything below it to the hook user, so a
// sandboxed hook can use its run directory. Without a sandbox it does
// nothing.
func (s *Sandbox) Own(path string) error {
	if s == nil {
		return nil
	}
	return chownTree(path, int(s.user.UID), int(s.user.GID))
}

// Launcher runs one command to completion: a *Sandbox here (nil: without
// a sandbox), or a *Remote through a sandbox server.
type Launcher interface {
	// Launch runs c until it exits or ctx ends, whatever it started
	// killed with it. It returns c's exit code (-1 when it did not exit
	// on its own) and nil when it exited 0; a *StartError when it did
	// not start.
	Launch(ctx context.Context, c Cmd) (exitCode int, err error)
}

var (
	_ Launcher = (*Sandbox)(nil)
	_ Launcher = (*Remote)(nil)
)

// Launch gives c.RunDir to the hook user (Own), then runs c with Command
// and Run, and kills what it left in its process group. An
// exec.ErrWaitDelay alone (a child kept the output open) is no error.
func (s *Sandbox) Launch(ctx context.Context, c Cmd) (int, error) {
	if c.RunDir != "" {
		if err := s.Own(c.RunDir); err != nil {
			return -1, &StartError{Err: err}
		}
	}
	cmd := s.Command(ctx, c)
	err := Run(cmd)
	if cmd.Process != nil {
		// The kernel does not reuse a PID while it names a live process
		// group, so this cannot hit an unrelated process.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	return code, err
}

// StartError is what Run returns when the command did not start.
type StartError struct{ Err error }

func (e *StartError) Error() string { return "start: " + e.Err.Error() }
func (e *StartError) Unwrap() error { return e.Err }

// Run starts cmd and waits for it. The kernel sends the parent-death
// signal when the OS thread that forked the process exits, not the
// process; Go may end a thread whose goroutine exits locked to it, so the
// calling goroutine stays on its thread from the fork until the process
// is reaped. A failure to start is a *StartError.
func Run(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return &StartError{Err: err}
	}
	return cmd.Wait()
}
