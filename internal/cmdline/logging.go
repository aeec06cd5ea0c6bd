package cmdline

import (
	"fmt"
	"io"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// Log formats of --log-format.
const (
	FormatJSON = "json"
	FormatText = "text"
)

const logFormatUsage = `log format: "json" (one JSON object a line: time, level, logger, msg and the fields) or "text"`

// LogFlags adds --log-format (default def) and returns where it is kept.
func LogFlags(cmd *cobra.Command, def string) *string {
	format := def
	cmd.Flags().StringVar(&format, "log-format", def, logFormatUsage)
	return &format
}

// NewLogger returns the process's logger: each entry one line on w, in
// format, at up to verbosity (0 info, 1 debug, more for trace). Nothing is
// sampled away: hooks' output is limited per hook instead (see
// docs/hooks.md), with a count of what was dropped, and errors carry no
// stack trace.
func NewLogger(w io.Writer, format string, verbosity int) (logr.Logger, error) {
	cfg := zapcore.EncoderConfig{
		TimeKey: "time", LevelKey: "level", NameKey: "logger", MessageKey: "msg", CallerKey: "caller",
		StacktraceKey: "stacktrace", LineEnding: zapcore.DefaultLineEnding,
		EncodeLevel: zapcore.LowercaseLevelEncoder, EncodeTime: zapcore.RFC3339NanoTimeEncoder,
		EncodeDuration: zapcore.StringDurationEncoder, EncodeCaller: zapcore.ShortCallerEncoder,
	}
	if err := CheckLogFormat(format); err != nil {
		return logr.Logger{}, err
	}
	enc := zapcore.NewConsoleEncoder(cfg)
	if format == FormatJSON {
		enc = zapcore.NewJSONEncoder(cfg)
	}
	sink := zapcore.Lock(zapcore.AddSync(w))
	// KubeAwareEncoder writes Kubernetes objects in fields as their
	// namespace/name.
	core := zapcore.NewCore(&crzap.KubeAwareEncoder{Encoder: enc}, sink, zap.NewAtomicLevelAt(zapcore.Level(-verbosity)))
	return zapr.NewLogger(zap.New(core, zap.ErrorOutput(sink))), nil
}

// CheckLogFormat refuses a --log-format other than json and text.
func CheckLogFormat(format string) error {
	if format != FormatJSON && format != FormatText {
		return fmt.Errorf("--log-format %q: want %q or %q", format, FormatJSON, FormatText)
	}
	return nil
}

// SetProcessLogger makes log the logger of controller-runtime and of
// client-go (klog: the leader election's lines), so that every line of
// the process has the same format. Only a main calls it.
func SetProcessLogger(log logr.Logger) {
	ctrl.SetLogger(log)
	klog.SetLogger(log)
}
