// Command sampleagent runs a tiny stand-in AI voice agent that speaks
// Twilio's Media Streams protocol: it echoes the caller's audio, sends marks,
// records DTMF and reports what it saw at GET /stats.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/loquent/twilio-voice-operator/internal/sampleagent"
)

const shutdownGrace = 10 * time.Second

func main() {
	listen := flag.String("listen", ":8090", "address to listen on")
	path := flag.String("path", "/media", "path of the Media Streams WebSocket")
	markEvery := flag.Int("mark-every", sampleagent.DefaultMarkEvery, "send a mark after every N caller media frames (negative: never)")
	requireHeader := flag.String("require-header", "", `refuse (401) a handshake without this header, "Name: value" (the credentials the webhook server sends from the number's spec.agent.headersSecretRef); empty accepts every handshake`)
	flag.Parse()

	opts := sampleagent.Options{MarkEvery: *markEvery}
	if *requireHeader != "" {
		name, value, ok := strings.Cut(*requireHeader, ":")
		if !ok || strings.TrimSpace(name) == "" {
			fmt.Fprintln(os.Stderr, `--require-header must be "Name: value"`)
			os.Exit(2)
		}
		opts.RequireHeader.Name, opts.RequireHeader.Value = strings.TrimSpace(name), strings.TrimSpace(value)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	opts.Logger = logger
	agent := sampleagent.New(opts)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Error("Cannot listen", "address", *listen, "error", err)
		os.Exit(1)
	}
	logger.Info("Sample agent listening", "address", ln.Addr().String(), "path", *path)
	if err := serve(ctx, ln, agent, *path); err != nil {
		logger.Error("Sample agent failed", "error", err)
		os.Exit(1)
	}
	logger.Info("Sample agent stopped")
}

// serve runs the agent on ln until ctx ends, then drains: the listener
// closes, live streams are asked to close and get shutdownGrace to do so.
func serve(ctx context.Context, ln net.Listener, agent *sampleagent.Agent, path string) error {
	h, err := agent.Handler(path)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = errors.Join(srv.Shutdown(sctx), agent.Shutdown(sctx))
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
