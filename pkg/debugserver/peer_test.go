package debugserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gadgetpm/gadgetpm/internal/testenv/eventually"
	"github.com/gadgetpm/gadgetpm/internal/testlog"
	"github.com/gadgetpm/gadgetpm/internal/testroot"
)

// The test binary doubles as the other identities' client and server: run
// with helperEnv set, it does that one thing instead of running tests.
const (
	helperEnv       = "GADGETPM_DEBUGSERVER_HELPER" // "serve" or "get"
	helperSocketEnv = "GADGETPM_DEBUGSERVER_SOCKET"
	helperGetsEnv   = "GADGETPM_DEBUGSERVER_GETS" // how many GETs "get" makes
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "serve":
		os.Exit(helperServe(os.Getenv(helperSocketEnv)))
	case "get":
		n, _ := strconv.Atoi(os.Getenv(helperGetsEnv))
		os.Exit(helperGet(os.Getenv(helperSocketEnv), max(n, 1)))
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helperServe serves sampleSource on path until stdin closes.
func helperServe(path string) int {
	srv, err := New(Options{Path: path, Source: sampleSource()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := srv.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// helperGet makes n GETs of /dump and prints the last status and body.
func helperGet(path string, n int) int {
	c := socketClient(path)
	var status int
	var body []byte
	for range n {
		resp, err := c.Get("http://gadgetpm/dump")
		if err != nil {
			fmt.Printf("error %v\n", err)
			return 1
		}
		body, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		status = resp.StatusCode
	}
	fmt.Printf("%d\n%s", status, body)
	return 0
}

// otherUser runs copies of the test binary as other uids. It needs root.
type otherUser struct {
	bin string
}

func newOtherUser(t *testing.T) otherUser {
	t.Helper()
	testroot.Require(t, "running clients as other uids")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := worldDir(t)
	bin := filepath.Join(dir, "debugserver.test")
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return otherUser{bin: bin}
}

// worldDir is a fresh directory every uid may enter (t.TempDir's are
// 0700).
func worldDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gadgetpm-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (o otherUser) command(uid uint32, mode, socket string, extraEnv ...string) *exec.Cmd {
	cmd := exec.Command(o.bin)
	cmd.Dir = filepath.Dir(o.bin)
	cmd.Env = append([]string{helperEnv + "=" + mode, helperSocketEnv + "=" + socket}, extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	return cmd
}

// get runs GET /dump n times as uid and returns the last status and body.
func (o otherUser) get(t *testing.T, uid uint32, socket string, n int) (int, string) {
	t.Helper()
	out, err := o.command(uid, "get", socket, helperGetsEnv+"="+strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
	}
	status, body, _ := strings.Cut(string(out), "\n")
	code, err := strconv.Atoi(status)
	if err != nil {
		t.Fatalf("client as uid %d printed %q", uid, out)
	}
	return code, body
}

// TestDebugSocketRefusesOtherUIDs: with the socket's mode opened to
// everyone, so that only the peer check can refuse, a uid that is neither
// root nor the operator's own gets a one-line refusal saying what to do,
// the operator logs it (a loop of refusals logs a few lines, not one per
// try) and keeps serving root.
func TestDebugSocketRefusesOtherUIDs(t *testing.T) {
	users := newOtherUser(t)
	path := filepath.Join(worldDir(t), "debug.sock")
	var logs testlog.Lines
	startServerWith(t, Options{Path: path, Source: sampleSource(), Logger: logs.Logger(0)})
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}

	code, body := users.get(t, 4242, path, 1)
	want := fmt.Sprintf("gadgetpm dump: permission denied: uid 4242 is not allowed on %s; run as root\n", path)
	if code != http.StatusForbidden || body != want {
		t.Fatalf("uid 4242: %d %q, want 403 %q", code, body, want)
	}
	if n := logs.Count("refused a debug socket peer"); n != 1 || logs.Count("refused a debug socket peer", `"uid"=4242`, path) != 1 {
		t.Fatalf("log lines for one refused peer: %q, want one naming uid 4242 and the socket", logs.Get())
	}

	// A client retrying in a loop.
	const tries = 50
	if code, _ := users.get(t, 4243, path, tries); code != http.StatusForbidden {
		t.Fatalf("uid 4243: status %d, want 403", code)
	}
	if n := logs.Count("refused a debug socket peer"); n < 2 || n > refusalBurst+1 {
		t.Fatalf("%d refusals logged %d lines, want between 2 and %d:\n%s", tries+1, n, refusalBurst+1, strings.Join(logs.Get(), "\n"))
	}

	c, b, dump := get(t, socketClient(path), http.MethodGet, "/dump")
	if c != http.StatusOK || !strings.Contains(dump, "gadget.hook-demo") {
		t.Fatalf("root after the refusals: %d %s %q", c, b, dump)
	}
}

// TestDebugSocketAnswersOwnUID: an operator running as a non-root uid
// answers that uid and root, and refuses a third uid, naming the uid to
// run as.
func TestDebugSocketAnswersOwnUID(t *testing.T) {
	users := newOtherUser(t)
	const own, other = 4242, 4243
	dir := worldDir(t)
	if err := os.Chown(dir, own, own); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "debug.sock")
	server := users.command(own, "serve", path)
	stdin, err := server.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var serverOut strings.Builder
	server.Stdout, server.Stderr = &serverOut, &serverOut
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		if err := server.Wait(); err != nil {
			t.Errorf("debug server as uid %d: %v\n%s", own, err, serverOut.String())
		}
	})
	eventually.NoError(t, 10*time.Second, "the debug server as uid 4242 to answer root on "+path, func() error {
		resp, err := socketClient(path).Get("http://gadgetpm/dump")
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}

	if code, body := users.get(t, own, path, 1); code != http.StatusOK || !strings.Contains(body, "gadget.hook-demo") {
		t.Fatalf("the operator's own uid: %d %q, want 200 and the dump", code, body)
	}
	code, body := users.get(t, other, path, 1)
	want := fmt.Sprintf("gadgetpm dump: permission denied: uid %d is not allowed on %s; run as root or as uid %d\n", other, path, own)
	if code != http.StatusForbidden || body != want {
		t.Fatalf("uid %d: %d %q, want 403 %q", other, code, body, want)
	}
}
