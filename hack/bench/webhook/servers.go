package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/child"
	"github.com/loquent/twilio-voice-operator/hack/bench/internal/realserver"
	"github.com/loquent/twilio-voice-operator/webhookserver"
)

// agentURL is every number's agent: never dialled, the voice webhook only names it.
const agentURL = "ws://127.0.0.1:9/media"

// bareTwiML is what the bare handler answers: about the size of the real
// answer (a <Connect><Stream> with three parameters).
const bareTwiML = `<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.bench.test/twilio/stream">` +
	`<Parameter name="from" value="+15550000001"/><Parameter name="to" value="+14155550000"/>` +
	`<Parameter name="token" value="v1.1700000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"/></Stream></Connect></Response>`

func numCPU() int { return runtime.NumCPU() }

// server is one server under load and its measured rounds.
type server struct {
	name       string
	addr       string
	pid        int
	metricsURL string // the real binary's; "" for the bare handler
	rounds     []round
}

// runChild is this program as a child server: it prints its address, then
// serves until its stdin closes.
func runChild(o options) error {
	var h http.Handler
	stopProfile := func() {}
	switch o.child {
	case "bare":
		h = bareHandler()
	case "profile":
		srv, err := staticServer(o.numbers)
		if err != nil {
			return err
		}
		h = srv.Handler()
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); _ = f.Close() }
	default:
		return fmt.Errorf("unknown -child %q", o.child)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	stopProfile()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// bareHandler drains the body and answers constant TwiML: the floor for the
// voice webhook.
func bareHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		_, _ = io.WriteString(w, bareTwiML)
	})
}

// staticServer is the webhook server's code with a static table of the
// routes the real binary gets from the cluster, and its production logger
// (discarded): what -cpuprofile profiles. Its Handler is served by a plain
// http.Server, so the profile leaves out Serve's connection accounting.
func staticServer(n int) (*webhookserver.Server, error) {
	routes := make([]webhookserver.Route, 0, n)
	for i := range n {
		routes = append(routes, webhookserver.Route{
			Number: realserver.Number(i), Object: types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("n%d", i)},
			AccountSID: realserver.AccountSID, AgentURL: agentURL, Record: true, Enabled: true,
		})
	}
	metrics, err := webhookserver.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	return webhookserver.New(webhookserver.Options{
		PublicURL: realserver.PublicURL,
		Routes:    webhookserver.NewStaticRoutes(routes, map[string]string{realserver.AccountSID: realserver.AuthToken}),
		TokenKeys: [][]byte{[]byte("bench-stream-token-key-0123456789abcdef")},
		Metrics:   metrics,
		Log:       zap.New(zap.WriteTo(io.Discard)),
	})
}

// startChild runs this program as a child server of the given kind; it
// reports its address.
func startChild(kind string, numbers int, extra ...string) (*child.Process, error) {
	return child.Start(append([]string{"-child", kind, "-numbers", strconv.Itoa(numbers)}, extra...)...)
}
