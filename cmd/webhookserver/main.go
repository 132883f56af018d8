// Command webhookserver answers Twilio's calls to the numbers the operator
// routes here (TwiML, recording callbacks, SMS events) and bridges each call's
// media stream to the number's agent. See package webhookserver.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/loquent/twilio-voice-operator/webhookserver"

	// Mozilla's roots, used when the system has none (the images have no CA
	// bundle): HTTPS to Twilio and to wss:// agents.
	_ "golang.org/x/crypto/x509roots/fallback"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is main without the exit, so that tests can drive it: 0 on success or
// -h, 2 on bad flags, 1 when the server fails.
func run(args []string) int {
	cfg, err := webhookserver.ParseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookserver: invalid flags:", err)
		return 2
	}
	log := zap.New(zap.UseFlagOptions(&cfg.Zap))
	ctrl.SetLogger(log)
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "Load kubeconfig")
		return 1
	}
	if err := webhookserver.Run(ctrl.SetupSignalHandler(), cfg, restCfg, log); err != nil {
		log.Error(err, "Webhook server stopped")
		return 1
	}
	return 0
}
