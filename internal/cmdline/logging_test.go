package cmdline

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(t *testing.T, lines []string)
	}{
		{FormatJSON, func(t *testing.T, lines []string) {
			var info, failed map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &info); err != nil {
				t.Fatalf("%q: %v", lines[0], err)
			}
			if err := json.Unmarshal([]byte(lines[1]), &failed); err != nil {
				t.Fatalf("%q: %v", lines[1], err)
			}
			for k, want := range map[string]any{"level": "info", "logger": "gadgetpm.hooks", "msg": "hello", "hook": "10-talk.sh", "output": "stdout"} {
				if info[k] != want {
					t.Errorf("%s=%v, want %v in %s", k, info[k], want, lines[0])
				}
			}
			if _, ok := info["time"].(string); !ok {
				t.Errorf("no time in %s", lines[0])
			}
			if failed["level"] != "error" || failed["error"] != "boom" || failed["stacktrace"] != nil {
				t.Errorf("error line %s: want level error, the error, no stack trace", lines[1])
			}
		}},
		{FormatText, func(t *testing.T, lines []string) {
			f := strings.Split(lines[0], "\t")
			if len(f) != 5 || f[1] != "info" || f[2] != "gadgetpm.hooks" || f[3] != "hello" || !strings.Contains(f[4], `"hook": "10-talk.sh"`) {
				t.Errorf("text line %q: want time, level, logger, message and the fields", lines[0])
			}
			if !strings.Contains(lines[1], "\terror\t") || !strings.Contains(lines[1], `"error": "boom"`) {
				t.Errorf("error line %q", lines[1])
			}
		}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := NewLogger(&buf, tc.format, 0)
			if err != nil {
				t.Fatal(err)
			}
			log = log.WithName("gadgetpm").WithName("hooks")
			log.Info("hello", "hook", "10-talk.sh", "output", "stdout")
			log.Error(errors.New("boom"), "failed")
			log.V(1).Info("debug is off at verbosity 0")
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 2 {
				t.Fatalf("want 2 lines (info and error, no debug), got:\n%s", buf.String())
			}
			tc.check(t, lines)
		})
	}
	if _, err := NewLogger(&bytes.Buffer{}, "xml", 0); err == nil || !strings.Contains(err.Error(), `--log-format "xml"`) {
		t.Errorf("format xml: %v", err)
	}
}
