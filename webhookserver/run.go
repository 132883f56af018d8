package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// streamTokenSecretRetry is how often a stream token Secret that does not
// exist yet is looked for at start.
var streamTokenSecretRetry = time.Second

// Run runs the webhook server described by cfg against the cluster at
// restCfg until ctx ends (SIGTERM), then drains as Server.Serve describes.
// The routing watch, the metrics and the probe listeners stay up while
// draining. It returns an error if anything fails to start or the routing
// table cannot be synced.
//
// The metrics and probe listeners start first: while the stream token
// Secret does not exist yet (the manager creates it on its first start), the
// process is live but not ready, and waits for it until ctx ends.
func Run(ctx context.Context, cfg Config, restCfg *rest.Config, log logr.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := NewMetrics(reg)
	if err != nil {
		return err
	}
	routing, err := NewRouting(restCfg, RoutingOptions{Namespaces: cfg.Namespaces, CredentialsSecret: cfg.CredentialsSecret, Log: log.WithName("routing"), Metrics: metrics})
	if err != nil {
		return err
	}
	var reader client.Reader
	if cfg.StreamTokenSecret.Name != "" {
		if reader, err = client.New(restCfg, client.Options{}); err != nil {
			return fmt.Errorf("create client: %w", err)
		}
	}
	loadKeys := func(ctx context.Context) ([][]byte, error) {
		return LoadStreamTokenKeys(ctx, reader, cfg.StreamTokenSecret, cfg.StreamTokenKeyFile)
	}
	agentEgress, err := cfg.agentEgressPolicy()
	if err != nil {
		return err
	}
	log.Info("Agent egress policy", "allowedDestinations", cfg.AgentAllowedDestinations, "allowLoopbackAgents", cfg.AllowLoopbackAgents)

	// Ready once the server exists and says so (routing synced, not draining).
	var server atomic.Pointer[Server]
	ready := func() bool { s := server.Load(); return s != nil && s.Ready() }
	stopMetrics, err := startAux(cfg.MetricsAddress, "metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}), "/metrics", log)
	if err != nil {
		return err
	}
	defer stopMetrics()
	stopProbes, err := startAux(cfg.ProbeAddress, "probes", probeHandler(ready), "/", log)
	if err != nil {
		return err
	}
	defer stopProbes()

	keys, err := waitForStreamTokenKeys(ctx, loadKeys, cfg.StreamTokenSecret, log)
	if err != nil {
		return err
	}
	log.Info("Stream token keys loaded", "keys", len(keys), "fingerprint", fingerprint(keys)[:12])
	srv, err := New(Options{
		PublicURL:           cfg.PublicURL,
		Routes:              routing,
		TokenKeys:           keys,
		TokenTTL:            cfg.StreamTokenTTL,
		AgentDialTimeout:    cfg.AgentDialTimeout,
		AgentEgress:         agentEgress,
		ShutdownGracePeriod: cfg.ShutdownGracePeriod,
		Metrics:             metrics,
		Log:                 log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen on --listen-address: %w", err)
	}
	server.Store(srv)

	// Background parts outlive ctx: they serve the drain.
	bg, stopBg := context.WithCancel(context.Background())
	defer stopBg()
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	routingErr := make(chan error, 1)
	go func() {
		err := routing.Start(bg)
		if err != nil {
			log.Error(err, "Routing stopped")
			stopServing()
		}
		routingErr <- err
	}()

	if cfg.StreamTokenReloadInterval > 0 {
		go WatchStreamTokenKeys(bg, cfg.StreamTokenReloadInterval, keys, loadKeys, srv.SetTokenKeys, metrics, log.WithName("stream-token"))
	}
	log.Info("Serving Twilio webhooks", "address", ln.Addr().String(), "publicURL", cfg.PublicURL, "namespaces", cfg.Namespaces)
	serveErr := srv.Serve(serveCtx, ln)
	stopBg()
	return errors.Join(serveErr, <-routingErr)
}

// waitForStreamTokenKeys loads the stream token keys at start. A Secret
// (--stream-token-secret) that does not exist yet is waited for, read again
// every streamTokenSecretRetry until it appears or ctx ends: the manager
// creates it on its first start, possibly after this pod. Every other
// problem (a missing --stream-token-key-file, a Secret without key "key", a
// value that is not a valid key list, no permission) fails at once.
func waitForStreamTokenKeys(ctx context.Context, load func(context.Context) ([][]byte, error), secret types.NamespacedName, log logr.Logger) ([][]byte, error) {
	waiting := false
	for {
		keys, err := load(ctx)
		if err == nil || secret.Name == "" || !apierrors.IsNotFound(err) {
			if err == nil && waiting {
				log.Info("Stream token Secret found", "secret", secret.String())
			}
			return keys, err
		}
		if !waiting {
			log.Info("Waiting for the stream token Secret; not ready until it exists. The manager creates it on its first start "+
				"(its --stream-token-secret), or create it yourself with a key \"key\" (`openssl rand -base64 48`)", "secret", secret.String())
			waiting = true
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped while waiting for the stream token Secret %s: %w", secret, err)
		case <-time.After(streamTokenSecretRetry):
		}
	}
}

// probeHandler serves /healthz (the process is up) and /readyz (ready for
// new calls: the server started, its routing is synced and it is not
// draining).
func probeHandler(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	return mux
}

// startAux serves h at path on addr ("0": not at all) and returns a stop function.
func startAux(addr, name string, h http.Handler, path string, log logr.Logger) (func(), error) {
	if addr == "0" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", name, addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Auxiliary server stopped", "server", name)
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
