package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loquent/twilio-voice-operator/hack/bench/internal/child"
)

// relayBuffers is shared by the relay's sockets, as the webhook server
// shares its own: the relay gets the same socket buffers (1 KiB read, pooled
// write) so that the comparison is of what each does per frame.
var relayBuffers = &sync.Pool{}

// runRelay is the minimal relay (this program run with -child relay): per
// connection it dials agentURL and copies text messages both ways, unparsed,
// with no token, queue, ping or deadline beyond what closing needs. It
// prints its address and its /metrics address, and serves until stdin closes.
func runRelay(agentURL string) error {
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: relayBuffers}
	dialer := &websocket.Dialer{ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: relayBuffers, HandshakeTimeout: 10 * time.Second}
	relay := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		caller, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer func() { _ = caller.Close() }()
		agent, resp, err := dialer.Dial(agentURL, nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return
		}
		defer func() { _ = agent.Close() }()
		done := make(chan struct{})
		go func() { copyMessages(agent, caller); close(done) }()
		copyMessages(caller, agent)
		<-done
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = (&http.Server{Handler: relay, ReadHeaderTimeout: 10 * time.Second}).Serve(ln) }()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() {
		_ = (&http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}).Serve(mln)
	}()
	fmt.Printf("%s %s\n", ln.Addr(), mln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// copyMessages writes every message read from src to dst; when src closes it
// passes the close on (the far side answers it, which ends the other copy).
func copyMessages(dst, src *websocket.Conn) {
	for {
		typ, data, err := src.ReadMessage()
		if err != nil {
			code := websocket.CloseNormalClosure
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			_ = dst.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(writeTimeout))
			return
		}
		if err := dst.WriteMessage(typ, data); err != nil {
			_ = src.Close()
			return
		}
	}
}

// relayProcess is the relay child process.
type relayProcess struct {
	addr, metricsURL string
	*child.Process
}

// startRelay runs this program as the relay; it reports "ADDR METRICS-ADDR".
func startRelay(agentURL string) (*relayProcess, error) {
	p, err := child.Start("-child", "relay", "-agent-url", agentURL)
	if err != nil {
		return nil, err
	}
	addr, metrics, ok := strings.Cut(p.Line, " ")
	if !ok {
		p.Stop()
		return nil, errors.New("relay reported " + p.Line + ", not its two addresses")
	}
	return &relayProcess{addr: addr, metricsURL: "http://" + metrics + "/metrics", Process: p}, nil
}
