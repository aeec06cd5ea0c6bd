package cmdline

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestSizeFlags(t *testing.T) {
	tests := []struct {
		args    []string
		pkg     int64
		index   int64
		wantErr string
	}{
		{nil, 64 << 20, 32 << 20, ""},
		{[]string{"--max-package-size=1Gi", "--max-index-size=1048576"}, 1 << 30, 1 << 20, ""},
		{[]string{"--max-package-size=500k"}, 500000, 32 << 20, ""},
		{[]string{"--max-package-size=0"}, 0, 0, "at least 1"},
		{[]string{"--max-index-size=lots"}, 0, 0, "want a size such as 64Mi"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var d Downloads
			cmd := &cobra.Command{}
			DownloadFlags(cmd, &d)
			err := cmd.ParseFlags(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || int64(d.MaxPackageSize) != tc.pkg || int64(d.MaxIndexSize) != tc.index {
				t.Fatalf("got %d, %d, %v; want %d, %d", d.MaxPackageSize, d.MaxIndexSize, err, tc.pkg, tc.index)
			}
		})
	}
}
