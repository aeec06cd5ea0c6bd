package streamserver_test

import (
	"testing"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { testenv.Main(m, &env) }
