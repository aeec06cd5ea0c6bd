package output

import (
	"fmt"
	"testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }

// event returns a gadget-like event of about size bytes (at least ~40),
// numbered i so tests can tell events apart.
func event(i, size int) []byte {
	b := fmt.Appendf(nil, `{"seq":%d,"comm":"sh","pad":"`, i)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}
