package streamserver_test

import (
	"testing"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/gadgetpm/gadgetpm/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	// the certificate watcher logs through controller-runtime's logger
	ctrllog.SetLogger(logr.Discard())
	testenv.Main(m, &env)
}
