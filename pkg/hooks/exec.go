package hooks

import (
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/go-logr/logr"

	"github.com/gadgetpm/gadgetpm/pkg/hooks/sandbox"
)

// Environment variable names of the hook protocol.
const (
	EnvBindingContextPath         = "BINDING_CONTEXT_PATH"
	EnvValuesPath                 = "VALUES_PATH"
	EnvConfigValuesPath           = "CONFIG_VALUES_PATH"
	EnvValuesJSONPatchPath        = "VALUES_JSON_PATCH_PATH"
	EnvConfigValuesJSONPatchPath  = "CONFIG_VALUES_JSON_PATCH_PATH"
	EnvKubernetesPatchPath        = "KUBERNETES_PATCH_PATH"
	EnvMetricsPath                = "METRICS_PATH"
	defaultPath                   = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	pipeDrainDelay                = 2 * time.Second
	maxLogLine                    = 16 << 20
	envKubeconfig                 = "KUBECONFIG"
	envKubernetesServiceHost      = "KUBERNETES_SERVICE_HOST"
	envKubernetesServicePort      = "KUBERNETES_SERVICE_PORT"
	envKubernetesServicePortHTTPS = "KUBERNETES_SERVICE_PORT_HTTPS"
)

// Env is the environment a hook runs with, besides the protocol's file
// paths. Nothing else of the operator's environment reaches a hook.
type Env struct {
	// Path is PATH; default the operator's PATH, or a standard system PATH
	// when that is empty.
	Path string
	// Home is HOME; default the operator's HOME, or "/".
	Home string
	// Kube holds what kubectl needs to reach the API server; nil means
	// KubeEnvFromOS(). RunnerOptions.Credentials replaces it in runs.
	Kube map[string]string
	// Package holds variables the package declares. They cannot override
	// PATH, HOME, TMPDIR, the protocol's paths or Kube.
	Package map[string]string
}

// KubeEnvFromOS returns the operator's KUBECONFIG (out of cluster) and
// KUBERNETES_SERVICE_HOST/PORT (in cluster), whichever are set.
func KubeEnvFromOS() map[string]string {
	out := map[string]string{}
	for _, k := range []string{envKubeconfig, envKubernetesServiceHost, envKubernetesServicePort, envKubernetesServicePortHTTPS} {
		if v, ok := os.LookupEnv(k); ok {
			out[k] = v
		}
	}
	return out
}

// build returns the environment list: package variables first, so every
// later entry wins.
func (e Env) build(tmpdir string, files map[string]string) []string {
	m := map[string]string{}
	for k, v := range e.Package {
		m[k] = v
	}
	kube := e.Kube
	if kube == nil {
		kube = KubeEnvFromOS()
	}
	for k, v := range kube {
		m[k] = v
	}
	m["PATH"] = firstNonEmpty(e.Path, os.Getenv("PATH"), defaultPath)
	m["HOME"] = firstNonEmpty(e.Home, os.Getenv("HOME"), "/")
	m["TMPDIR"] = tmpdir
	for k, v := range files {
		m[k] = v
	}
	keys := sortedKeys(m)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// command prepares a hook process without the sandbox: in its own process
// group, so cancelling ctx kills the hook and everything it started, and
// with SIGKILL as its parent-death signal (start it with sandbox.Run).
// Background children that keep stdout open must not hold the run
// forever: pipeDrainDelay bounds the wait for them.
func command(ctx context.Context, path string, args []string, dir string, env []string, stdout, stderr io.Writer) *exec.Cmd {
	return (*sandbox.Sandbox)(nil).Command(ctx, sandbox.Cmd{Path: path, Args: args, Dir: dir, Env: env, Stdout: stdout, Stderr: stderr, WaitDelay: pipeDrainDelay})
}

// lineLogger writes each line of a hook's output as one log entry, however
// long; a line longer than maxLogLine is split so a hook printing without
// newlines cannot exhaust memory. With out set, every line goes to the
// hook's tail and only the lines its rate limit allows to the log. Not
// safe for concurrent use: exec gives each stream its own copying
// goroutine.
type lineLogger struct {
	log    logr.Logger
	stream string
	buf    []byte
	max    int
	out    *runOutput
}

func newLineLogger(log logr.Logger, stream string) *lineLogger {
	return &lineLogger{log: log, stream: stream, max: maxLogLine}
}

func (l *lineLogger) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.buf = append(l.buf, p...)
			for len(l.buf) >= l.max {
				l.emit(l.buf[:l.max])
				l.buf = append(l.buf[:0], l.buf[l.max:]...)
			}
			break
		}
		l.buf = append(l.buf, p[:i]...)
		p = p[i+1:]
		for len(l.buf) > l.max {
			l.emit(l.buf[:l.max])
			l.buf = append(l.buf[:0], l.buf[l.max:]...)
		}
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
	return n, nil
}

// Flush logs a last line that had no newline.
func (l *lineLogger) Flush() {
	if len(l.buf) > 0 {
		l.emit(l.buf)
		l.buf = l.buf[:0]
	}
}

func (l *lineLogger) emit(line []byte) {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if l.out != nil && !l.out.take(l.stream, line) {
		return
	}
	l.log.Info(string(line), "output", l.stream)
}
