package testroot

import "testing"

func TestInCI(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"", false}, {"true", true}, {"1", true}, {"yes", true}, {"false", false}, {"0", false},
	} {
		t.Setenv(EnvCI, tc.v)
		if got := InCI(); got != tc.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tc.v, got, tc.want)
		}
	}
}
