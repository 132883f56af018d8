package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/loquent/twilio-voice-operator/webhookserver"
)

const (
	publicURL  = "https://voice.bench.test"
	accountSID = "AC0000000000000000000000000000be"
	authToken  = "bench-auth-token-0123456789abcdef"
	agentURL   = "ws://127.0.0.1:9/media" // never dialled: the voice webhook only names it
)

// bareTwiML is what the bare handler answers: about the size of the real
// answer (a <Connect><Stream> with three parameters).
const bareTwiML = `<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://voice.bench.test/twilio/stream">` +
	`<Parameter name="from" value="+15550000001"/><Parameter name="to" value="+14155550000"/>` +
	`<Parameter name="token" value="v1.1700000000.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"/></Stream></Connect></Response>`

// target is one server under load: where to send, and what its answer must contain.
type target struct {
	name    string
	url     string // http://127.0.0.1:PORT/twilio/voice
	numbers int    // requests call number(i % numbers)
}

type running struct {
	target
	stop func()
}

// number returns the i-th routed E.164 number.
func number(i int) string { return fmt.Sprintf("+1415%07d", i) }

// staticRoutes routes n numbers of one account to one agent: the webhook
// server's RouteSource without the cluster.
func staticRoutes(n int) *webhookserver.StaticRoutes {
	routes := make([]webhookserver.Route, 0, n)
	for i := range n {
		routes = append(routes, webhookserver.Route{
			Number: number(i), Object: types.NamespacedName{Namespace: "bench", Name: fmt.Sprintf("n%d", i)},
			AccountSID: accountSID, AgentURL: agentURL, Record: true, Enabled: true,
		})
	}
	return webhookserver.NewStaticRoutes(routes, map[string]string{accountSID: authToken})
}

func logger(mode string) (logr.Logger, error) {
	switch mode {
	case "prod":
		return zap.New(zap.WriteTo(io.Discard)), nil
	case "none":
		return logr.Discard(), nil
	}
	return logr.Logger{}, fmt.Errorf(`-log must be "prod" or "none", not %q`, mode)
}

// startWebhookServer runs the real webhook server (New + Serve) on a
// loopback listener with a static routing table of n numbers.
func startWebhookServer(n int, logMode string) (*running, error) {
	log, err := logger(logMode)
	if err != nil {
		return nil, err
	}
	metrics, err := webhookserver.NewMetrics(prometheus.NewRegistry())
	if err != nil {
		return nil, err
	}
	srv, err := webhookserver.New(webhookserver.Options{
		PublicURL: publicURL,
		Routes:    staticRoutes(n),
		TokenKeys: [][]byte{[]byte("bench-stream-token-key-0123456789abcdef")},
		Metrics:   metrics,
		Log:       log,
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return &running{
		target: target{name: "webhookserver", url: "http://" + ln.Addr().String() + webhookserver.VoicePath, numbers: n},
		stop: func() {
			cancel()
			if err := <-done; err != nil {
				fmt.Println("webhook server:", err)
			}
		},
	}, nil
}

// startBareServer runs a bare net/http handler that drains the body and
// answers constant TwiML: the floor for the voice webhook.
func startBareServer(n int) (*running, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/xml; charset=utf-8")
			_, _ = io.WriteString(w, bareTwiML)
		}),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return &running{
		target: target{name: "bare net/http", url: "http://" + ln.Addr().String() + webhookserver.VoicePath, numbers: n},
		stop: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
			if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Println("bare server:", err)
			}
		},
	}, nil
}
